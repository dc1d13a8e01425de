package import FedModel

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

    /// Held-out evaluation reports of one round, summed over agents.
    package struct Evaluation: Sendable, Equatable {
        package var modelVersion: UInt64
        package var agents = 0
        package var users = 0
        package var top1Hits = 0
        package var top10Hits = 0
        package var lossSum = 0.0

        package var top1: Double { users == 0 ? 0 : Double(top1Hits) / Double(users) }
        package var top10: Double { users == 0 ? 0 : Double(top10Hits) / Double(users) }
        package var meanLoss: Double { users == 0 ? 0 : lossSum / Double(users) }
    }

    package typealias AgentRecord = AggregatorCheckpoint.AgentRecord

    package private(set) var phase: Phase = .idle
    package private(set) var round: UInt64
    package private(set) var modelVersion: UInt64
    package private(set) var parameters: [Float]
    /// The open round's announcement (``open(deadline:announcement:)``), for snapshots.
    package private(set) var announcement: RoundPlan?
    package private(set) var agentRecords: [String: AgentRecord]
    /// Rejections by reason, for metrics.
    package private(set) var rejections: [String: Int] = [:]
    private let enrolled: Set<String>
    private let minAgents: Int
    private var verifier: UpdateVerifier
    private var averaging: FederatedAveraging
    private var updates: [String: ModelUpdate] = [:]
    private var evaluation: Evaluation?
    /// The open round's merged alert-rate releases (``AlertRateCalibration``), and which agents sent one.
    private var alertCounts = AlertRateCalibration.Counts.zero
    private var alertAgents: Set<String> = []
    /// When each enrolled agent was last heard, for the live count.
    private var lastHeard: [String: ContinuousClock.Instant] = [:]
    /// The alert thresholds in force (sent in welcomes and re-announced), once calibrated or restored
    /// from a checkpoint; nil before.
    package private(set) var thresholds: AlertThresholds?
    /// The clip norm announced with the next round (moves only with adaptive clipping).
    package private(set) var clipNorm: Double
    private let adaptiveClipping: AdaptiveClipping?
    /// Refuse updates without a verified ledger receipt for the round (every private federation).
    package private(set) var requireReceipts: Bool
    /// Agents whose receipt for the open round was verified.
    private var receipts: Set<String> = []
    /// The open round's securely aggregated sum and the agents in it (secure rounds have no per-agent updates).
    private var aggregate: (update: ModelUpdate, agents: [String])?
    /// The most users any one agent's report may count (the users all agents may sample in a round).
    package let maxUsers: Int
    /// Agents whose evaluation of the open round was counted (one each).
    private var evaluationAgents: Set<String> = []

    /// - Parameters:
    ///   - round: the last completed round (0 for a new federation, the checkpoint's round on resume).
    ///   - optimizerState: the server optimizer's snapshot from a checkpoint; empty for a fresh start.
    package init(parameters: [Float], round: UInt64, modelVersion: UInt64 = 0, enrolled: Set<String>, minAgents: Int,
                 maxUpdateNorm: Double, clipNorm: Double? = nil, averaging: FederatedAveraging,
                 optimizerState: [Double] = [], agentRecords: [String: AgentRecord] = [:],
                 adaptiveClipping: AdaptiveClipping? = nil, initialClipNorm: Double = 1,
                 thresholds: AlertThresholds? = nil, requireReceipts: Bool = false, maxUsers: Int = 1_000_000) {
        self.requireReceipts = requireReceipts
        precondition(minAgents >= 1 && minAgents <= enrolled.count, "quorum must be between 1 and the enrolled agents")
        self.thresholds = thresholds
        self.parameters = parameters
        self.round = round
        self.modelVersion = modelVersion
        self.enrolled = enrolled
        self.minAgents = minAgents
        self.verifier = UpdateVerifier(parameterCount: parameters.count, maxNorm: maxUpdateNorm, clipNorm: clipNorm,
                                       maxUsers: maxUsers)
        self.maxUsers = maxUsers
        var averaging = averaging
        averaging.serverOptimizer.restore(optimizerState)
        self.averaging = averaging
        self.agentRecords = agentRecords
        self.adaptiveClipping = adaptiveClipping
        self.clipNorm = initialClipNorm
    }

    /// An agent counts as live when heard within this window (agents send a heartbeat every 2 s).
    package static let liveWindow: Duration = .seconds(7)

    /// Records that `agentID` was heard at `now`; returns whether it was not live before (the live
    /// count grew).
    package func heard(_ agentID: String, at now: ContinuousClock.Instant) -> Bool {
        let previous = lastHeard.updateValue(now, forKey: agentID)
        return previous.map { now - $0 >= Self.liveWindow } ?? true
    }

    /// Seconds since each agent was last heard, at `now`.
    package func secondsSinceHeard(at now: ContinuousClock.Instant) -> [String: Double] {
        lastHeard.mapValues { instant in
            let elapsed = now - instant
            return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        }
    }

    /// Agents heard within ``liveWindow`` before `now`.
    package func liveAgents(at now: ContinuousClock.Instant) -> Int {
        lastHeard.values.filter { now - $0 < Self.liveWindow }.count
    }

    /// Updates accepted in the open round so far.
    package var receivedUpdates: Int { updates.count }

    package func setThresholds(_ thresholds: AlertThresholds) { self.thresholds = thresholds }

    /// The server optimizer's state, for checkpoints.
    package var optimizerState: [Double] { averaging.serverOptimizer.stateSnapshot() }

    /// Everything a restarted aggregator needs to continue exactly here.
    package func checkpoint(shape: LSTMShape) -> AggregatorCheckpoint {
        AggregatorCheckpoint(round: round, modelVersion: modelVersion,
                             parameters: LSTMParameters(shape: shape, values: parameters),
                             optimizerState: optimizerState, agents: agentRecords, clipNorm: clipNorm,
                             thresholds: thresholds)
    }

    /// Opens the next round; returns its number.
    package func open(deadline: ContinuousClock.Instant) -> UInt64 {
        precondition(phase == .idle, "a round is already open")
        round += 1
        updates = [:]
        aggregate = nil
        receipts = []
        evaluation = Evaluation(modelVersion: modelVersion)
        alertCounts = AlertRateCalibration.Counts.zero
        alertAgents = []
        evaluationAgents = []
        phase = .collecting(round: round, deadline: deadline)
        return round
    }

    /// Opens the next round and keeps the announcement `make(round, modelVersion)` for snapshots.
    package func open(deadline: ContinuousClock.Instant, announcement make: (UInt64, UInt64) -> RoundPlan) -> RoundPlan {
        let opened = open(deadline: deadline)
        let message = make(opened, modelVersion)
        announcement = message
        return message
    }

    /// What a (re)connecting agent needs to know: the open round, and whether it still waits for it.
    package func snapshot(for agentID: String) -> (round: UInt64, modelVersion: UInt64, open: RoundPlan?, awaiting: Bool) {
        guard case .collecting = phase, let announcement else { return (round, modelVersion, nil, false) }
        return (round, modelVersion, announcement, updates[agentID] == nil)
    }

    /// Accepts or refuses one update. Refusals are counted by reason and never affect the round.
    package func accept(_ update: ModelUpdate) throws(UpdateRejection) {
        do throws(UpdateRejection) {
            guard case .collecting(let open, _) = phase else { throw .noRoundOpen }
            guard update.round == open else { throw .wrongRound(expected: open, found: update.round) }
            guard enrolled.contains(update.agentID) else { throw .unknownAgent(update.agentID) }
            guard (announcement?.hyperparameters.secureThreshold ?? 0) == 0 else { throw .secureRound }
            guard updates[update.agentID] == nil else { throw .duplicate(agentID: update.agentID) }
            guard !requireReceipts || receipts.contains(update.agentID) else {
                throw .missingReceipt(agentID: update.agentID)
            }
            try verifier.verify(update)
            updates[update.agentID] = update
            agentRecords[update.agentID, default: AgentRecord()].acceptedUpdates += 1
            agentRecords[update.agentID, default: AgentRecord()].lastRound = open
        } catch {
            recordRejection(reason: error.reason, agentID: enrolled.contains(update.agentID) ? update.agentID : nil)
            throw error
        }
    }

    /// Whether `agentID` may release into the open round: its ledger receipt was verified (or none is required).
    package func mayRelease(_ agentID: String) -> Bool { !requireReceipts || receipts.contains(agentID) }

    /// Accepts the unmasked sum of a secure round: `agents` are the survivors whose masked updates it
    /// holds (each with a verified receipt). Checked like one update whose norm bound is the agents'
    /// bounds together; the agents' records count it as their accepted update.
    package func acceptAggregate(_ update: ModelUpdate, agents: [String]) throws(UpdateRejection) {
        do throws(UpdateRejection) {
            guard case .collecting(let open, _) = phase else { throw .noRoundOpen }
            guard update.round == open else { throw .wrongRound(expected: open, found: update.round) }
            guard aggregate == nil, updates.isEmpty else { throw .duplicate(agentID: update.agentID) }
            var bound = verifier
            bound.maxNorm *= Double(max(1, agents.count))
            try bound.verify(update)
            aggregate = (update, agents)
            for agent in agents {
                agentRecords[agent, default: AgentRecord()].acceptedUpdates += 1
                agentRecords[agent, default: AgentRecord()].lastRound = open
            }
        } catch {
            recordRejection(reason: error.reason, agentID: nil)
            throw error
        }
    }

    /// The newest ledger entry id a verified receipt from `agentID` showed (0: none yet).
    package func ledgerSequence(of agentID: String) -> Int64 { agentRecords[agentID]?.ledgerSequence ?? 0 }

    /// Records a receipt the node layer verified (signatures, chain, parameters) for the open round:
    /// the agent's update for that round may now be accepted. False when `round` is not open or the
    /// receipt does not move past the newest entry seen before. The same receipt again in the same
    /// round (an agent re-sending after a reconnect) is accepted as it was, once recorded.
    @discardableResult
    package func recordReceipt(agentID: String, round: UInt64, sequence: Int64, head: String) -> Bool {
        guard case .collecting(let open, _) = phase, round == open, enrolled.contains(agentID) else { return false }
        if receipts.contains(agentID), sequence == ledgerSequence(of: agentID), head == agentRecords[agentID]?.ledgerHead {
            return true
        }
        guard sequence > ledgerSequence(of: agentID) else { return false }
        receipts.insert(agentID)
        agentRecords[agentID, default: AgentRecord()].ledgerSequence = sequence
        agentRecords[agentID, default: AgentRecord()].ledgerHead = head
        return true
    }

    /// Counts a refusal decided before the update reached the round (envelope, decoding).
    package func recordRejection(reason: String, agentID: String?) {
        rejections[reason, default: 0] += 1
        if let agentID { agentRecords[agentID, default: AgentRecord()].rejectedUpdates += 1 }
    }

    /// Adds `agentID`'s held-out evaluation of the open round's model; returns why it was refused
    /// instead: another round's or model's, a second from the same agent, or figures no honest release
    /// can have (negative, more users than `maxUsers`, more top-1 than top-10 hits or top-10 hits than
    /// users, a loss that is not finite and non-negative).
    @discardableResult
    package func record(_ report: EvaluationRelease, from agentID: String) -> String? {
        guard case .collecting(let open, _) = phase, var totals = evaluation else { return "no round is open" }
        guard report.round == open, report.modelVersion == modelVersion else {
            return "for round \(report.round), model v\(report.modelVersion); open: round \(open), model v\(modelVersion)"
        }
        guard enrolled.contains(agentID) else { return "not enrolled" }
        guard !evaluationAgents.contains(agentID) else { return "a second evaluation from this agent in this round" }
        guard report.users >= 0, report.users <= maxUsers, report.top10Hits >= 0, report.top10Hits <= report.users,
              report.top1Hits >= 0, report.top1Hits <= report.top10Hits, report.lossSum.isFinite, report.lossSum >= 0 else {
            return "implausible figures: \(report.users) users, \(report.top10Hits) top-10 and \(report.top1Hits) top-1 hits, loss \(report.lossSum)"
        }
        evaluationAgents.insert(agentID)
        totals.agents += 1
        totals.users += Int(report.users)
        totals.top1Hits += Int(report.top1Hits)
        totals.top10Hits += Int(report.top10Hits)
        totals.lossSum += report.lossSum
        evaluation = totals
        return nil
    }

    /// Adds `agentID`'s noisy alert-rate release (alerts, events[, churn warnings, shopper-days]) for
    /// the open round; returns why it was refused instead: another round's, a second from the same
    /// agent, one of another shape, or counts that are not finite or beyond what `maxUsers` users'
    /// clipped counts plus noise can reach.
    @discardableResult
    package func record(_ report: HistogramRelease, from agentID: String) -> String? {
        guard case .collecting(let open, _) = phase else { return "no round is open" }
        guard report.round == open else { return "for round \(report.round); open: round \(open)" }
        guard enrolled.contains(agentID) else { return "not enrolled" }
        guard !alertAgents.contains(agentID) else { return "a second alert-rate release from this agent in this round" }
        guard let counts = AlertRateCalibration.Counts(values: report.counts) else {
            return "\(report.counts.count) values, or one not finite: expected 2 or 4 finite counts"
        }
        // Each user's counts are clipped (events at the history window, the largest clip), and the noise
        // is far below a million: anything beyond is a lie.
        let limit = Double(maxUsers) * Double(AlertRateCalibration.historyEvents) + 1_000_000
        guard report.counts.allSatisfy({ abs($0) <= limit }) else { return "counts beyond \(limit)" }
        alertCounts = alertCounts + counts
        alertAgents.insert(agentID)
        return nil
    }

    /// The merged alert-rate releases of the round that was last closed, if any agent sent one.
    package private(set) var closedAlertCounts: AlertRateCalibration.Counts?

    /// Whether the round can close now: every enrolled agent answered, or the deadline passed.
    package func isReadyToClose(now: ContinuousClock.Instant) -> Bool {
        guard case .collecting(_, let deadline) = phase else { return false }
        return updates.count == enrolled.count || now >= deadline
    }

    /// The open round's deadline, if one is open.
    package var deadline: ContinuousClock.Instant? {
        guard case .collecting(_, let deadline) = phase else { return nil }
        return deadline
    }

    /// Closes the open round: aggregates if the quorum was reached. Returns the outcome and the
    /// round's summed evaluation of the model it started from.
    @discardableResult
    package func close() -> Outcome {
        closeWithEvaluation().outcome
    }

    /// A regional aggregator's close: the accepted updates' sum (their deltas, users and clip counts added up;
    /// or the secure aggregate) is what goes up to the global aggregator, as this region's one update. The model
    /// is not changed here: the next global round brings the global model (``install(parameters:modelVersion:)``).
    package func closeForwarding() -> (outcome: Outcome, sum: ModelUpdate?, evaluation: Evaluation) {
        let (open, totals, received, contributors) = endCollection()
        guard contributors.count >= minAgents else {
            return (.failedQuorum(round: open, received: contributors.count, required: minAgents), nil, totals)
        }
        var sum = [Float](repeating: 0, count: parameters.count)
        for update in received where update.deltaSum.count == sum.count {
            for i in sum.indices { sum[i] += update.deltaSum[i] }
        }
        let forwarded = ModelUpdate(agentID: "region", round: open, deltaSum: sum,
                                    users: received.reduce(0) { $0 + $1.users },
                                    clipCount: received.reduce(0) { $0 + $1.clipCount })
        return (.aggregated(round: open, agents: contributors), forwarded, totals)
    }

    /// Ends the open round's collection: its number, the evaluation of the model it started from, the updates
    /// received (or the secure aggregate) and the agents in them.
    private func endCollection() -> (open: UInt64, totals: Evaluation, received: [ModelUpdate], contributors: [String]) {
        guard case .collecting(let open, _) = phase else { preconditionFailure("no round is open") }
        phase = .idle
        announcement = nil
        let totals = evaluation ?? Evaluation(modelVersion: modelVersion)
        evaluation = nil
        closedAlertCounts = alertAgents.isEmpty ? nil : alertCounts
        let received = aggregate.map { [$0.update] } ?? updates.values.sorted { $0.agentID < $1.agentID }
        let contributors = aggregate?.agents ?? received.map(\.agentID)
        aggregate = nil
        return (open, totals, received, contributors)
    }

    /// Replaces the model between rounds (a regional aggregator installing the global model it was sent).
    package func install(parameters: [Float], modelVersion: UInt64) {
        guard case .idle = phase, parameters.count == self.parameters.count else { return }
        self.parameters = parameters
        self.modelVersion = modelVersion
    }

    package func closeWithEvaluation() -> (outcome: Outcome, evaluation: Evaluation) {
        let (open, totals, received, contributors) = endCollection()
        guard contributors.count >= minAgents else {
            return (.failedQuorum(round: open, received: contributors.count, required: minAgents), totals)
        }
        averaging.apply(received, to: &parameters)
        modelVersion += 1
        if let adaptiveClipping {
            let within = received.reduce(0) { $0 + $1.clipCount }
            let population: Double = switch averaging.denominator {
            case .fixed(let expected): expected
            case .contributingUsers: Double(received.reduce(0) { $0 + $1.users })
            }
            if population > 0 {
                // Each agent releases Σ (b − ½) over its sampled users (centred, sensitivity ½).
                clipNorm = adaptiveClipping.next(clipNorm: clipNorm, unclipped: within / population + 0.5)
                if verifier.clipNorm != nil { verifier.clipNorm = clipNorm }
            }
        }
        return (.aggregated(round: open, agents: contributors), totals)
    }
}
