/// The edge agent's side of the federation protocol as a pure state machine: events in (the link
/// connected, a welcome snapshot, a round announcement, a model chunk, training finished, a timer
/// tick), actions out (send a hello or heartbeat, request the model, install it, start training,
/// send or re-send an update, apply thresholds, write the status). No clock, socket or file inside:
/// the caller passes the wall-clock time with each event and performs the actions, so every branch
/// is tested with tables (`AgentProtocolTests`).
///
/// The rules it keeps:
/// - one round's work at a time; a newer round announced meanwhile waits in ``pending``;
/// - a round is trained only on the model it names: a missing or older model is requested first
///   (at most once per ``modelRequestInterval``) and the round waits for it;
/// - a round already handled is never trained again; a restarted aggregator that still awaits this
///   agent's update for it gets the same update again (re-sending releases nothing new), except a
///   secure-aggregation round's, which is never kept or re-sent;
/// - a round past its deadline is skipped; after the privacy budget refused a release, no round is
///   trained again (the ledger only grows).
package struct AgentProtocol: Sendable {
    /// What the aggregator's welcome says about the federation (the wire's `Welcome`, mapped).
    package struct Snapshot: Sendable, Equatable {
        package var modelVersion: UInt64
        /// The round being collected, if any, and whether it still waits for this agent's update.
        package var openRound: RoundPlan?
        package var awaitingUpdate: Bool
        package var thresholds: [Float]
        /// This agent's party number in secure-aggregation rounds.
        package var party: UInt64 = 1

        package init(modelVersion: UInt64, openRound: RoundPlan? = nil, awaitingUpdate: Bool = false,
                     thresholds: [Float] = []) {
            (self.modelVersion, self.openRound) = (modelVersion, openRound)
            (self.awaitingUpdate, self.thresholds) = (awaitingUpdate, thresholds)
        }
    }

    /// One chunk of a model file.
    package struct ModelChunk: Sendable, Equatable {
        package var modelVersion: UInt64
        package var index, count: Int
        package var bytes: [UInt8]

        package init(modelVersion: UInt64, index: Int, count: Int, bytes: [UInt8]) {
            (self.modelVersion, self.index, self.count, self.bytes) = (modelVersion, index, count, bytes)
        }
    }

    /// How a round's local work ended.
    package enum TrainingOutcome: Sendable, Equatable {
        case completed(RoundWork)
        /// The privacy budget refused the release: training stops for good.
        case budgetRefused(reason: String)
        /// The round closed while this agent trained: nothing was released or charged.
        case deadlinePassed(reason: String)
        /// The announced parameters broke the agent's privacy floor: nothing was released; it stays in.
        case refusedParameters(reason: String)
        case failed(reason: String)
    }

    package enum Event: Sendable, Equatable {
        /// The CURVE handshake with the aggregator succeeded (first connection or a reconnect).
        case connected
        /// The aggregator refused this agent's key.
        case authenticationFailed
        case disconnected
        /// The periodic timer (every 2 s).
        case tick
        /// A model read from local disk at start.
        case modelLoaded(version: UInt64)
        case welcomed(Snapshot)
        case roundOpened(RoundPlan)
        case modelChunk(ModelChunk)
        /// The file assembled from chunks decoded and is now the agent's model.
        case modelInstalled(version: UInt64)
        /// The assembled file was refused (corrupt, wrong shape).
        case modelRejected(version: UInt64)
        case thresholds([Float])
        case trainingFinished(round: RoundPlan, TrainingOutcome)
        case verdict(round: UInt64, accepted: Bool, reason: String)
    }

    /// What this agent reports in its status file.
    package struct Status: Sendable, Equatable {
        package var participating: Bool
        package var stoppedReason: String
        package var lastRound: UInt64
        package var modelVersion: UInt64
        /// Rounds refused because their announced parameters broke the privacy floor, and the last reason.
        package var refusedRounds = 0
        package var lastRefusal = ""
    }

    /// Things worth a log line that need no other action.
    package enum Note: Sendable, Equatable {
        case lostAggregator
        case registered(round: UInt64?, modelVersion: UInt64)
        case skippedPastDeadline(round: UInt64)
        case skippedTrainingStopped(round: UInt64, reason: String)
        case trainingStopped(round: UInt64, reason: String)
        case workFailed(round: UInt64, reason: String)
        /// A round refused by the privacy floor (`refusedRounds` counts them).
        case refusedRound(round: UInt64, reason: String)
        case updateAccepted(round: UInt64)
        case refused(round: UInt64, reason: String)
        case resending(round: UInt64)
    }

    package enum Action: Sendable, Equatable {
        case sendHello
        case sendHeartbeat(round: UInt64)
        case requestModel(heldVersion: UInt64)
        /// Decode `file` as model `version`; answer with ``Event/modelInstalled(version:)`` or
        /// ``Event/modelRejected(version:)``.
        case installModel(version: UInt64, file: [UInt8])
        /// Train `round` on the installed model; answer with ``Event/trainingFinished(round:_:)``.
        case startTraining(RoundPlan)
        /// Send the round's releases (evaluation, histogram, then the update).
        case send(RoundWork, round: RoundPlan)
        /// Send the releases already computed for `round` again, unchanged.
        case resend(RoundWork, round: RoundPlan)
        case applyThresholds([Float])
        case writeStatus(Status)
        case note(Note)
        /// The aggregator refused this agent's key: a configuration error that retrying cannot fix.
        case stopNotEnrolled
    }

    /// A model request is not repeated within this many milliseconds.
    package static let modelRequestInterval: Int64 = 5_000

    package private(set) var modelVersion: UInt64?
    package private(set) var registered = false
    package private(set) var pending: RoundPlan?
    /// The round whose work is running, if any.
    package private(set) var working: UInt64?
    /// The newest round this agent trained, skipped or refused.
    package private(set) var handledRound: UInt64 = 0
    /// The work done for the newest trained round, kept to re-send to a restarted aggregator.
    package private(set) var lastWork: (round: RoundPlan, work: RoundWork)?
    /// The newest round the aggregator answered an update of with a verdict (accepted or refused).
    package private(set) var answeredRound: UInt64 = 0
    /// A welcome came after ``lastWork`` was sent: the aggregator may have restarted since.
    package private(set) var welcomedSinceWork = false
    /// The round the last welcome showed open (0: none). An announcement of an older round than that
    /// after the welcome is a round re-opened by a restarted aggregator.
    package private(set) var welcomeOpenRound: UInt64 = 0
    /// Set once the privacy budget refused a release.
    package private(set) var trainingStopped: String?
    /// Rounds refused by the privacy floor, and the last reason.
    package private(set) var refusedRounds = 0
    private var lastRefusal = ""
    private var chunks: [Int: [UInt8]] = [:]
    private var chunkVersion: UInt64?
    private var modelRequestedAt: Int64?
    /// The thresholds last applied: the aggregator re-announces them every second, applied once.
    private var appliedThresholds: [Float] = []

    package init() {}

    /// The status as it stands.
    package var status: Status {
        Status(participating: trainingStopped == nil, stoppedReason: trainingStopped ?? "", lastRound: handledRound,
               modelVersion: modelVersion ?? 0, refusedRounds: refusedRounds, lastRefusal: lastRefusal)
    }

    /// Handles one event at wall-clock time `now` (Unix milliseconds); returns the actions to perform, in order.
    package mutating func handle(_ event: Event, now: Int64) -> [Action] {
        switch event {
        case .connected:
            registered = false
            return [.sendHello]
        case .authenticationFailed:
            return [.stopNotEnrolled]
        case .disconnected:
            return [.note(.lostAggregator)]
        case .tick:
            return registered ? [.sendHeartbeat(round: handledRound)] : [.sendHello]
        case .modelLoaded(let version):
            modelVersion = version
            return []
        case .welcomed(let snapshot):
            registered = true
            welcomedSinceWork = true
            welcomeOpenRound = snapshot.openRound?.round ?? 0
            var actions = apply(snapshot.thresholds)
            actions.append(.note(.registered(round: snapshot.openRound?.round, modelVersion: snapshot.modelVersion)))
            if let open = snapshot.openRound, snapshot.awaitingUpdate {
                actions += consider(open, resend: true, now: now)
            } else if modelVersion != snapshot.modelVersion {
                actions += requestModel(now: now)
            }
            return actions
        case .roundOpened(let plan):
            return consider(plan, resend: false, now: now)
        case .thresholds(let thresholds):
            return apply(thresholds)
        case .modelChunk(let chunk):
            return receive(chunk)
        case .modelInstalled(let version):
            modelVersion = version
            modelRequestedAt = nil
            guard let waiting = pending, working == nil else { return [] }
            pending = nil
            return consider(waiting, resend: false, now: now)
        case .modelRejected:
            modelRequestedAt = nil
            return []
        case .trainingFinished(let round, let outcome):
            return finish(round, outcome, now: now)
        case .verdict(let round, let accepted, let reason):
            answeredRound = max(answeredRound, round)
            return [.note(accepted ? .updateAccepted(round: round) : .refused(round: round, reason: reason))]
        }
    }

    /// Decides about an open round: wait behind running work, skip it (training stopped, already
    /// handled, past its deadline), re-send the work already done for it, fetch the model first, or train.
    private mutating func consider(_ plan: RoundPlan, resend: Bool, now: Int64) -> [Action] {
        if let working {
            if plan.round > working { pending = plan }
            return []
        }
        if let reason = trainingStopped {
            guard plan.round > handledRound else { return [] }
            handledRound = plan.round
            return [.note(.skippedTrainingStopped(round: plan.round, reason: reason))]
        }
        if plan.round <= handledRound {
            // Re-send when a welcome says the aggregator waits for it, or when the round is announced
            // after a welcome that came after the work was sent and either there was no verdict for it
            // or the welcome did not show this round open: a restarted aggregator that re-opened the
            // round after this agent's welcome lost the update — even one its previous run accepted and
            // crashed before checkpointing. Secure rounds never re-send (docs/PROTOCOL.md).
            let lost = welcomedSinceWork && plan.hyperparameters.secureThreshold == 0
                && (answeredRound < plan.round || welcomeOpenRound < plan.round)
            guard resend || lost, let last = lastWork, last.round.round == plan.round,
                  last.round.modelVersion == plan.modelVersion else { return [] }
            welcomedSinceWork = false
            return [.note(.resending(round: plan.round)), .resend(last.work, round: plan)]
        }
        guard now < plan.deadlineMilliseconds else {
            handledRound = plan.round
            return [.note(.skippedPastDeadline(round: plan.round))]
        }
        guard modelVersion == plan.modelVersion else {
            pending = plan
            return requestModel(now: now)
        }
        working = plan.round
        return [.startTraining(plan)]
    }

    /// Apply new thresholds; the same ones again (the aggregator's re-announcement) change nothing.
    private mutating func apply(_ thresholds: [Float]) -> [Action] {
        guard !thresholds.isEmpty, thresholds != appliedThresholds else { return [] }
        appliedThresholds = thresholds
        return [.applyThresholds(thresholds)]
    }

    private mutating func requestModel(now: Int64) -> [Action] {
        if let asked = modelRequestedAt, now - asked < Self.modelRequestInterval { return [] }
        modelRequestedAt = now
        return [.requestModel(heldVersion: modelVersion ?? 0)]
    }

    private mutating func receive(_ chunk: ModelChunk) -> [Action] {
        guard chunk.count > 0, (0..<chunk.count).contains(chunk.index) else { return [] }
        if chunkVersion != chunk.modelVersion {
            chunks = [:]
            chunkVersion = chunk.modelVersion
        }
        chunks[chunk.index] = chunk.bytes
        guard chunks.count == chunk.count else { return [] }
        let file = (0..<chunk.count).flatMap { chunks[$0] ?? [] }
        chunks = [:]
        chunkVersion = nil
        return [.installModel(version: chunk.modelVersion, file: file)]
    }

    private mutating func finish(_ round: RoundPlan, _ outcome: TrainingOutcome, now: Int64) -> [Action] {
        guard working == round.round else { return [] }
        working = nil
        handledRound = max(handledRound, round.round)
        var actions: [Action]
        switch outcome {
        case .completed(let work):
            // Work released into secure aggregation cannot be re-sent: a restarted aggregator runs a new
            // protocol instance, and masking the same input twice would expose it. It is not kept.
            lastWork = work.secureInput == nil ? (round, work) : nil
            welcomedSinceWork = false
            actions = [.send(work, round: round)]
        case .budgetRefused(let reason):
            trainingStopped = reason
            actions = [.note(.trainingStopped(round: round.round, reason: reason))]
        case .refusedParameters(let reason):
            refusedRounds += 1
            lastRefusal = reason
            actions = [.note(.refusedRound(round: round.round, reason: reason))]
        case .deadlinePassed(let reason), .failed(let reason):
            actions = [.note(.workFailed(round: round.round, reason: reason))]
        }
        actions.append(.writeStatus(status))
        if let next = pending, next.round > round.round {
            pending = nil
            actions += consider(next, resend: false, now: now)
        }
        return actions
    }
}
