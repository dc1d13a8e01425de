package import FedModel

/// What the aggregator must not lose: everything needed to continue at the same round with the
/// same model after a crash.
package struct AggregatorCheckpoint: Sendable, Equatable {
    package struct AgentRecord: Sendable, Equatable {
        package var lastRound: UInt64
        package var acceptedUpdates: Int
        package var rejectedUpdates: Int
        /// The newest entry of the agent's privacy ledger a verified receipt showed: its id and hash (hex).
        /// Receipts must move past it, so a ledger that was emptied, cut or replaced is noticed.
        package var ledgerSequence: Int64 = 0
        package var ledgerHead = ""
        package init(lastRound: UInt64 = 0, acceptedUpdates: Int = 0, rejectedUpdates: Int = 0,
                     ledgerSequence: Int64 = 0, ledgerHead: String = "") {
            self.lastRound = lastRound
            self.acceptedUpdates = acceptedUpdates
            self.rejectedUpdates = rejectedUpdates
            self.ledgerSequence = ledgerSequence
            self.ledgerHead = ledgerHead
        }
    }

    /// The last completed round.
    package var round: UInt64
    package var modelVersion: UInt64
    package var parameters: LSTMParameters<Float>
    /// The server optimizer's ``Optimizer/stateSnapshot()``.
    package var optimizerState: [Double]
    package var agents: [String: AgentRecord]
    /// The clip norm of the next round (adaptive clipping); nil in checkpoints made before it existed.
    package var clipNorm: Double?
    /// The alert thresholds in force; nil before the first calibration (and in older checkpoints).
    package var thresholds: AlertThresholds?

    package init(round: UInt64, modelVersion: UInt64, parameters: LSTMParameters<Float>, optimizerState: [Double],
                 agents: [String: AgentRecord], clipNorm: Double? = nil, thresholds: AlertThresholds? = nil) {
        self.thresholds = thresholds
        self.round = round
        self.modelVersion = modelVersion
        self.parameters = parameters
        self.optimizerState = optimizerState
        self.agents = agents
        self.clipNorm = clipNorm
    }
}
