/// The aggregator's round state machine, over plain values: open a round with a deadline, accept
/// verified updates from enrolled agents (one each), and close the round at the deadline or when
/// every expected agent has answered. A round that ends with fewer than `minAgents` updates fails
/// and the model is unchanged; the next round starts from the same model.
package actor RoundCoordinator {
    package enum Phase: Sendable, Equatable {
        case idle
        case collecting(round: UInt64, deadline: ContinuousClock.Instant)
    }

    package enum Outcome: Sendable, Equatable {
        /// Quorum reached: the model was updated with these agents' contributions.
        case aggregated(round: UInt64, agents: [String])
        /// Too few updates by the deadline: the model is unchanged.
        case failedQuorum(round: UInt64, received: Int, required: Int)
    }

    package private(set) var phase: Phase = .idle
    package private(set) var round: UInt64
    package private(set) var parameters: [Float]
    private let enrolled: Set<String>
    private let minAgents: Int
    private let verifier: UpdateVerifier
    private var averaging: FederatedAveraging
    private var updates: [String: ModelUpdate] = [:]
    /// Rejections by reason, for metrics.
    package private(set) var rejections: [String: Int] = [:]

    /// - Parameters:
    ///   - round: the last completed round (0 for a new federation, the checkpoint's round on resume).
    ///   - optimizerState: the server optimizer's snapshot from a checkpoint; empty for a fresh start.
    package init(parameters: [Float], round: UInt64, enrolled: Set<String>, minAgents: Int, maxUpdateNorm: Double,
                 averaging: FederatedAveraging, optimizerState: [Double] = []) {
        precondition(minAgents >= 1 && minAgents <= enrolled.count, "quorum must be between 1 and the enrolled agents")
        self.parameters = parameters
        self.round = round
        self.enrolled = enrolled
        self.minAgents = minAgents
        self.verifier = UpdateVerifier(parameterCount: parameters.count, maxNorm: maxUpdateNorm)
        var averaging = averaging
        averaging.serverOptimizer.restore(optimizerState)
        self.averaging = averaging
    }

    /// The server optimizer's state, for checkpoints.
    package var optimizerState: [Double] { averaging.serverOptimizer.stateSnapshot() }

    /// Opens the next round; returns its number.
    package func open(deadline: ContinuousClock.Instant) -> UInt64 {
        precondition(phase == .idle, "a round is already open")
        round += 1
        updates = [:]
        phase = .collecting(round: round, deadline: deadline)
        return round
    }

    /// Accepts or refuses one update. Refusals are counted by reason and never affect the round.
    package func accept(_ update: ModelUpdate) throws(UpdateRejection) {
        do throws(UpdateRejection) {
            guard case .collecting(let open, _) = phase else { throw .noRoundOpen }
            guard update.round == open else { throw .wrongRound(expected: open, found: update.round) }
            guard enrolled.contains(update.agentID) else { throw .unknownAgent(update.agentID) }
            guard updates[update.agentID] == nil else { throw .duplicate(agentID: update.agentID) }
            try verifier.verify(update)
            updates[update.agentID] = update
        } catch {
            rejections[error.reason, default: 0] += 1
            throw error
        }
    }

    /// Whether the round can close now: every enrolled agent answered, or the deadline passed.
    package func isReadyToClose(now: ContinuousClock.Instant) -> Bool {
        guard case .collecting(_, let deadline) = phase else { return false }
        return updates.count == enrolled.count || now >= deadline
    }

    /// Closes the open round: aggregates if the quorum was reached.
    package func close() -> Outcome {
        guard case .collecting(let open, _) = phase else { preconditionFailure("no round is open") }
        phase = .idle
        let received = updates.values.sorted { $0.agentID < $1.agentID }
        guard received.count >= minAgents else {
            return .failedQuorum(round: open, received: received.count, required: minAgents)
        }
        averaging.apply(received, to: &parameters)
        return .aggregated(round: open, agents: received.map(\.agentID))
    }
}
