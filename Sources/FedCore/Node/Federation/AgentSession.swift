package import FedIO
package import FedLogic
package import FedModel
import Foundation
package import Logging
package import ServiceLifecycle
import Synchronization

/// An edge agent taking part in the federation: registers (and re-registers after every reconnect,
/// receiving a snapshot of the federation), follows round announcements, downloads the global model
/// when it is new, runs its ``RoundWorker`` on a dedicated thread, and sends the sealed update and
/// its held-out evaluation.
///
/// All protocol state lives in one task that handles one event at a time (messages from both
/// sockets, link events, timer ticks, finished work), so there are no data races by construction.
package final class AgentSession: Sendable {
    /// A summary of each round this agent took part in (for progress output and tests).
    package struct RoundSummary: Sendable {
        package var round: UInt64
        package var modelVersion: UInt64
        package var sampledUsers: Int
        package var seconds: Double
        package var evaluatedUsers: Int
        package var top10: Double
    }

    private let link: AgentLink
    private let subscriber: ZMQChannel
    private let verifier: AnnouncementVerifier
    private let worker: any RoundWorker
    private let modelPath: String?
    private let statusPath: String?
    private let logger: Logger
    private let agentID: String
    /// Signs this agent's secure-aggregation keys and survivor lists.
    private let signing: SigningKeyPair
    /// The other enrolled agents' identity keys, when pinned (`secure_aggregation_peers`).
    private let peers: Set<SigningPublicKey>?
    private let onModel: (@Sendable (LSTMParameters<Float>, UInt64) -> Void)?
    private let onThresholds: (@Sendable ([Float]) -> Void)?
    /// What `/status` and `/metrics` read: the link's state and the protocol's status as they change.
    package struct Snapshot: Sendable, Equatable {
        package var connected = false
        package var registered = false
        package var status: AgentProtocol.Status?
    }
    private let state = Mutex(Snapshot())
    package var snapshot: Snapshot { state.withLock { $0 } }
    /// The aggregator's clock minus this one's (ms), measured at each welcome; when this hello was sent.
    private let clock = Mutex<(offset: Int64, helloSent: Int64?, measured: Bool)>((0, nil, false))

    /// Measures the clock offset from a welcome (the aggregator's time, taken midway between this
    /// agent's hello and the welcome's arrival) and logs it when it is large or changed by seconds.
    private func measureClock(_ welcome: Welcome) {
        guard welcome.aggregatorTimeMilliseconds > 0 else {
            clock.withLock { $0.measured = true }
            return
        }
        let now = Self.nowMilliseconds
        let (previous, offset) = clock.withLock { clock -> (Int64, Int64) in
            let sent = clock.helloSent.flatMap { now - $0 <= 10_000 && $0 <= now ? $0 : nil } ?? now
            let previous = clock.offset
            clock.offset = welcome.aggregatorTimeMilliseconds - (sent + (now - sent) / 2)
            clock.measured = true
            return (previous, clock.offset)
        }
        if abs(offset) >= 1_000, abs(offset - previous) >= 1_000 {
            logger.warning("This node's clock differs from the aggregator's: round deadlines are converted to it", metadata: [
                "clock.offset_s": "\(String(format: "%+.1f", Double(offset) / 1000))",
            ])
        }
    }

    /// A round plan with its deadline on this node's clock.
    private func local(_ plan: RoundPlan) -> RoundPlan {
        var plan = plan
        plan.deadlineMilliseconds -= clock.withLock { $0.offset }
        return plan
    }

    package init(configuration: EdgeAgentConfiguration, identity: NodeIdentity, aggregator: NodePublicIdentity,
                 context: ZMQContext, worker: any RoundWorker, logger: Logger, persistModel: Bool = true,
                 onModel: (@Sendable (LSTMParameters<Float>, UInt64) -> Void)? = nil,
                 onThresholds: (@Sendable ([Float]) -> Void)? = nil, peers: Set<SigningPublicKey>? = nil) throws {
        self.peers = peers
        self.onModel = onModel
        self.onThresholds = onThresholds
        link = try AgentLink(context: context, configuration: configuration, identity: identity, aggregator: aggregator)
        subscriber = try ZMQChannel(context: context, configuration: .init(
            kind: .sub, options: AgentLink.options(configuration: configuration, identity: identity, aggregator: aggregator),
            connect: configuration.announcementEndpoints, subscriptions: [[]]))
        verifier = AnnouncementVerifier(aggregator: aggregator)
        self.worker = worker
        self.logger = logger
        agentID = configuration.id
        signing = identity.signing
        modelPath = persistModel ? configuration.modelPath : nil
        statusPath = persistModel ? (configuration.dataDirectory as NSString).appendingPathComponent("status.json") : nil
    }

    package func close() {
        link.close()
        subscriber.close()
    }

    /// What reaches the session's loop: messages from both sockets, link events, the timer, and the
    /// end of a round's work. Each is mapped to an ``AgentProtocol`` event (wire types end here).
    private enum Input: Sendable {
        case direct(ZMQMessage)
        case announcement(ZMQMessage)
        case link(ZMQSocketEvent)
        case tick
        case finished(round: RoundPlan, AgentProtocol.TrainingOutcome)
    }

    /// A message that belongs to the open round's secure aggregation, not to ``AgentProtocol``.
    private enum SecureStep: Sendable {
        case roster(SecureRosterMessage)
        case shares(SecureForwardedSharesMessage)
        case survivors(SecureSurvivorsMessage)
        case unmask(SecureUnmaskRequestMessage)
    }

    /// What one input became once opened: a protocol event or a secure-aggregation step.
    private enum Routed: Sendable {
        case event(AgentProtocol.Event)
        case secure(SecureStep)
    }

    /// The session's secure-aggregation state: this agent's party number (from its welcome), the open
    /// round's participant, the boxes forwarded to it, and its update on the secure grid waiting for them.
    private struct SecureState {
        var party: UInt64 = 1
        var participant: SecureParticipant?
        var forwarded: [SecureAggregation.SealedShares]?
        var pending: (input: SecretWords, users: Int, clipCount: Double)?

        mutating func reset(_ participant: SecureParticipant?) {
            pending?.input.wipe()
            (self.participant, forwarded, pending) = (participant, nil, nil)
        }
    }

    /// Runs until cancelled. Throws ``AgentLinkError/notEnrolled(agentID:publicKeyFile:)`` when the
    /// aggregator refuses this agent's key (a configuration error that retrying cannot fix).
    package func run() async throws {
        let (inputs, continuation) = AsyncStream.makeStream(of: Input.self)
        // A discarding group: each round adds its training task, and a plain task group keeps every finished
        // child until it is awaited (the soak saw the heap grow by a few KiB a round). Children end quietly
        // (a channel that failed is logged), so the group throws only what the loop itself throws.
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { [link, logger] in
                do {
                    for try await message in link.messages { continuation.yield(.direct(message)) }
                } catch {
                    logger.error("The link to the aggregator stopped receiving", metadata: ["error": "\(error)"])
                }
            }
            group.addTask { [subscriber, logger] in
                do {
                    for try await message in subscriber.messages { continuation.yield(.announcement(message)) }
                } catch {
                    logger.error("The announcements subscription stopped receiving", metadata: ["error": "\(error)"])
                }
            }
            group.addTask { [link] in
                for await event in link.events { continuation.yield(.link(event)) }
            }
            group.addTask {
                while !Task.isCancelled {
                    continuation.yield(.tick)
                    guard (try? await Task.sleep(for: .seconds(2))) != nil else { return }
                }
            }
            var machine = AgentProtocol()
            var secure = SecureState()
            var model = loadModel()
            if let model {
                onModel?(model.parameters, model.version)
                _ = machine.handle(.modelLoaded(version: model.version), now: Self.nowMilliseconds)
            }
            defer { continuation.finish() }
            for await input in inputs {
                try Task.checkCancellation()
                let event: AgentProtocol.Event
                switch self.route(input) {
                case nil: continue
                case .secure(let step)?:
                    await handle(step, &secure)
                    continue
                case .event(let opened)?:
                    event = opened
                }
                if case .welcomed(let snapshot) = event {
                    secure.party = snapshot.party
                    state.withLock { $0.registered = true }
                }
                // A round this agent will not release in (refused, failed, too late): it stops taking part in
                // the round's secure aggregation, so the others need not wait for it or rebuild its masks.
                if case .trainingFinished(let plan, let outcome) = event, secure.participant?.round == plan.round {
                    if case .completed = outcome {} else { secure.reset(nil) }
                }
                var queue = machine.handle(event, now: Self.nowMilliseconds)
                while !queue.isEmpty {
                    let action = queue.removeFirst()
                    if let next = try await perform(action, model: &model, secure: &secure, continuation: continuation,
                                                    group: &group) {
                        queue += machine.handle(next, now: Self.nowMilliseconds)
                    }
                }
            }
            group.cancelAll()
        }
    }

    /// Opens, decodes and maps one input; nil (logged) for what neither the protocol nor secure
    /// aggregation should see.
    private func route(_ input: Input) -> Routed? {
        if case .direct(let message) = input {
            do {
                let (kind, payload) = try link.open(message)
                switch kind {
                case .secureRoster: return .secure(.roster(try SecureRosterMessage(decoding: payload)))
                case .secureForwardedShares: return .secure(.shares(try SecureForwardedSharesMessage(decoding: payload)))
                case .secureSurvivors: return .secure(.survivors(try SecureSurvivorsMessage(decoding: payload)))
                case .secureUnmaskRequest: return .secure(.unmask(try SecureUnmaskRequestMessage(decoding: payload)))
                default: return event(for: input, opened: (kind, payload)).map(Routed.event)
                }
            } catch {
                logger.warning("Ignored a message from the aggregator", metadata: ["error": "\(error)"])
                return nil
            }
        }
        return event(for: input, opened: nil).map(Routed.event)
    }

    /// Maps one input (a direct message already opened) to a protocol event; nil (logged) for what the
    /// protocol should not see.
    private func event(for input: Input, opened: (kind: MessageKind, payload: [UInt8])?) -> AgentProtocol.Event? {
        switch input {
        case .link(let event):
            switch event.kind {
            case .handshakeSucceeded:
                state.withLock { $0.connected = true }
                logger.info("Connected to aggregator (CURVE handshake done); registering",
                            metadata: ["agent.id": "\(agentID)", "endpoint": "\(link.endpoint)"])
                return .connected
            case .handshakeFailedAuthentication: return .authenticationFailed
            case .disconnected:
                state.withLock { ($0.connected, $0.registered) = (false, false) }
                return .disconnected
            default: return nil
            }
        case .tick:
            return .tick
        case .finished(let round, let outcome):
            return .trainingFinished(round: round, outcome)
        case .announcement(let message):
            do {
                let (kind, body) = try verifier.open(message)
                switch kind {
                case .roundOpen:
                    // Before the first welcome this node's clock offset is unknown, so the deadline cannot be
                    // read; the welcome carries the open round, and it is re-announced every second.
                    guard clock.withLock({ $0.measured }) else { return nil }
                    return .roundOpened(local(RoundPlan(try RoundOpen(decoding: body))))
                case .thresholds:
                    let message = try DriftThresholdsMessage(decoding: body)
                    return .thresholds(message.thresholds)
                default: return nil
                }
            } catch {
                logger.warning("Ignored an announcement", metadata: ["error": "\(error)"])
                return nil
            }
        case .direct:
            guard let (kind, payload) = opened else { return nil }
            do {
                switch kind {
                case .welcome:
                    let welcome = try Welcome(decoding: payload)
                    measureClock(welcome)
                    logger.info("Registered: sealed hello accepted, sealed welcome opened", metadata: [
                        "agent.id": "\(agentID)", "aggregator.id": "\(welcome.aggregatorID)",
                        "round.id": "\(welcome.currentRound)", "model.version": "\(welcome.modelVersion)",
                        "agents.enrolled": "\(welcome.enrolledAgents)",
                    ])
                    var snapshot = AgentProtocol.Snapshot(
                        modelVersion: welcome.modelVersion, openRound: welcome.openRound.map { local(RoundPlan($0)) },
                        awaitingUpdate: welcome.awaitingUpdate, thresholds: welcome.thresholds)
                    snapshot.party = welcome.party
                    return .welcomed(snapshot)
                case .modelChunk:
                    let chunk = try ModelChunk(decoding: payload)
                    return .modelChunk(.init(modelVersion: chunk.modelVersion, index: Int(chunk.index),
                                             count: Int(chunk.count), bytes: chunk.bytes))
                case .verdict:
                    let verdict = try Verdict(decoding: payload)
                    return .verdict(round: verdict.round, accepted: verdict.accepted, reason: verdict.reason)
                default:
                    logger.warning("Unexpected message from the aggregator", metadata: ["kind": "\(kind)"])
                    return nil
                }
            } catch {
                logger.warning("Ignored a message from the aggregator", metadata: ["error": "\(error)"])
                return nil
            }
        }
    }

    /// Performs one action; returns the event it produced at once, if any (a model installed or refused).
    private func perform(_ action: AgentProtocol.Action, model: inout (parameters: LSTMParameters<Float>, version: UInt64)?,
                         secure: inout SecureState, continuation: AsyncStream<Input>.Continuation,
                         group: inout ThrowingDiscardingTaskGroup<any Error>) async throws -> AgentProtocol.Event? {
        switch action {
        case .sendHello:
            clock.withLock { $0.helloSent = Self.nowMilliseconds }
            await send(Hello(agentID: agentID, softwareVersion: FedDrift.version, sentAtMilliseconds: Self.nowMilliseconds))
        case .sendHeartbeat(let round):
            await send(Heartbeat(sentAtMilliseconds: Self.nowMilliseconds, round: round))
        case .requestModel(let held):
            await send(ModelRequest(heldVersion: held))
        case .installModel(let version, let file):
            do {
                let decoded = try ModelFile.decode(file, path: "model v\(version) from the aggregator")
                model = (decoded.parameters, decoded.modelVersion)
                onModel?(decoded.parameters, decoded.modelVersion)
                logger.info("Received global model", metadata: ["model.version": "\(version)", "bytes": "\(file.count)"])
                if let modelPath {
                    do {
                        try ModelFile.write(encoded: file, to: modelPath)
                    } catch {
                        logger.warning("Could not save the model locally", metadata: ["error": "\(error)"])
                    }
                }
                return .modelInstalled(version: decoded.modelVersion)
            } catch {
                logger.warning("Ignored a model from the aggregator", metadata: ["error": "\(error)"])
                return .modelRejected(version: version)
            }
        case .startTraining(let plan):
            Failpoint.agentRoundReceived.reach()
            guard let model, model.version == plan.modelVersion else {
                preconditionFailure("AgentProtocol started training without the round's model")
            }
            logger.info("Round open: training", metadata: [
                "round.id": "\(plan.round)", "model.version": "\(plan.modelVersion)",
                "sampling_rate": "\(plan.hyperparameters.samplingRate)",
            ])
            let worker = self.worker
            let h = plan.hyperparameters
            // Secure aggregation: step 0 runs while the agent trains (fresh keys for this round, signed with
            // its identity), and the worker charges its releases only once this agent is among the parties
            // whose shares were forwarded (U2): otherwise its update could never be sent.
            let participant = h.secureThreshold > 0
                && worker.refusal(of: plan, dimension: model.parameters.values.count) == nil
                ? SecureParticipant(round: plan.round, party: secure.party, threshold: h.secureThreshold,
                                    dimension: model.parameters.values.count, identity: signing, peers: peers) : nil
            secure.reset(participant)
            group.addTask {
                let outcome: AgentProtocol.TrainingOutcome
                do {
                    outcome = .completed(try await onDedicatedThread {
                        try worker.work(global: model.parameters, modelVersion: model.version, round: plan,
                                        mayRelease: { participant?.sharesArrived ?? true })
                    })
                } catch let error as PrivacyLedgerError {
                    if case .budgetExceeded = error { outcome = .budgetRefused(reason: error.description) }
                    else { outcome = .failed(reason: error.description) }
                } catch let error as RoundWorkError {
                    if case .belowFloor = error { outcome = .refusedParameters(reason: error.description) }
                    else { outcome = .deadlinePassed(reason: error.description) }
                } catch {
                    outcome = .failed(reason: "\(error)")
                }
                continuation.yield(.finished(round: plan, outcome))
            }
            if let participant {
                do {
                    await send(try participant.advertise())
                } catch {
                    logger.warning("Secure aggregation: could not advertise keys", metadata: ["error": "\(error)"])
                }
            }
        case .send(let work, let round):
            if work.noiseOnly {
                logger.warning("""
                    Training was not done by the round's cutoff: released noise alone (charged), so that whether \
                    and when this agent releases does not depend on its data. Fewer users per round (sampling_rate) \
                    or a longer rounds.timeout_seconds let it contribute
                    """, metadata: ["round.id": "\(round.round)"])
            }
            logger.info("Trained local update", metadata: [
                "round.id": "\(round.round)", "users.sampled": "\(work.sampledUsers)",
                "users.clipped": "\(work.clippedUsers)", "loss.mean": "\(work.meanLoss)", "seconds": "\(work.seconds)",
            ])
            Failpoint.agentBeforeSend.reach()
            await submit(work, round: round)
            defer {
                Failpoint.agentAfterSend.reach()
                // The round's training buffers were freed: give their pages back (ProcessMemory.releaseFreeMemory).
                ProcessMemory.releaseFreeMemory()
            }
            if let input = work.secureInput {
                guard let participant = secure.participant, participant.round == round.round else {
                    logger.warning("Secure aggregation: this round's protocol is not running here; the update is not sent",
                                   metadata: ["round.id": "\(round.round)"])
                    return nil
                }
                secure.pending = (input, work.submission.users, work.submission.clipCount)
                await sendMaskedInput(&secure)
            }
        case .resend(let work, let round):
            await submit(work, round: round)
        case .applyThresholds(let thresholds):
            onThresholds?(thresholds)
            logger.info("Alert thresholds from the aggregator", metadata: [
                "threshold.interest_shift": "\(thresholds.first.map { "\($0)" } ?? "-")",
                "threshold.churn_risk": "\(thresholds.count > 1 ? "\(thresholds[1])" : "-")",
            ])
        case .writeStatus(let status):
            writeStatus(status)
        case .note(let note):
            log(note)
        case .stopNotEnrolled:
            throw AgentLinkError.notEnrolled(agentID: agentID, publicKeyFile: "identity.public")
        }
        return nil
    }

    private func log(_ note: AgentProtocol.Note) {
        switch note {
        case .lostAggregator:
            logger.warning("Lost the aggregator; reconnecting with back-off", metadata: ["agent.id": "\(agentID)"])
        case .registered:
            break  // logged with the welcome's details when it was opened
        case .skippedPastDeadline(let round):
            logger.warning("Round already past its deadline; skipping", metadata: ["round.id": "\(round)"])
        case .skippedTrainingStopped(let round, let reason):
            logger.notice("Not taking part in this round: training stopped", metadata: [
                "round.id": "\(round)", "reason": "\(reason)",
            ])
        case .trainingStopped(let round, let reason):
            logger.error("Privacy budget exhausted: no more training or update releases; still ingesting and scoring",
                         metadata: ["round.id": "\(round)", "detail": "\(reason)"])
        case .refusedRound(let round, let reason):
            logger.warning("Round refused: the announced parameters break this agent's privacy floor", metadata: [
                "round.id": "\(round)", "reason": "\(reason)",
            ])
        case .workFailed(let round, let reason):
            logger.error("Round work failed", metadata: ["round.id": "\(round)", "error": "\(reason)"])
        case .updateAccepted(let round):
            logger.info("Update accepted by the aggregator", metadata: ["round.id": "\(round)"])
        case .refused(let round, let reason):
            logger.warning("Aggregator refused a message", metadata: ["round.id": "\(round)", "reason": "\(reason)"])
        case .resending(let round):
            logger.info("Re-sending this round's update to the restarted aggregator", metadata: ["round.id": "\(round)"])
        }
    }

    private func submit(_ work: RoundWork, round: RoundPlan) async {
        if let evaluation = work.evaluation { await send(evaluation.wire) }
        if let histogram = work.histogram { await send(histogram.wire) }
        if let demand = work.demand { await send(demand.wire) }
        if !work.receipt.isEmpty {
            await send(LedgerReceiptMessage(round: round.round, entries: work.receipt.map(\.wire)))
        }
        // A secure round's update goes masked, in step 2 (``sendMaskedInput(_:)``).
        if work.secureInput == nil { await send(work.submission.wire, round: round.round) }
    }

    /// Step 2, once both the update and the boxes forwarded by the aggregator are here: masks the update
    /// on a dedicated thread (one keystream per party over every parameter) and sends it.
    private func sendMaskedInput(_ secure: inout SecureState) async {
        guard let participant = secure.participant, let shares = secure.forwarded, let pending = secure.pending else { return }
        secure.pending = nil
        let input = pending.input, users = pending.users, clipCount = pending.clipCount
        do {
            let message = try await onDedicatedThread {
                try participant.mask(input, shares: shares, users: users, clipCount: clipCount)
            }
            await send(message)
            logger.info("Secure aggregation: masked update sent (the aggregator can only unmask a sum of agents)",
                        metadata: ["round.id": "\(participant.round)", "agents.sharing": "\(shares.count + 1)"])
        } catch {
            logger.warning("Secure aggregation: could not mask the update; this agent drops out of the round",
                           metadata: ["round.id": "\(participant.round)", "error": "\(error)"])
        }
    }

    /// A secure-aggregation step from the aggregator for the open round: answer it.
    private func handle(_ step: SecureStep, _ secure: inout SecureState) async {
        guard let participant = secure.participant else { return }
        do throws(SecureAggregation.Failure) {
            switch step {
            case .roster(let message):
                guard message.round == participant.round else { return }
                await send(try participant.share(message))
            case .shares(let message):
                guard message.round == participant.round else { return }
                secure.forwarded = message.shares
                participant.sharesArrived = true
                await sendMaskedInput(&secure)
            case .survivors(let message):
                guard message.round == participant.round else { return }
                await send(try participant.sign(message))
            case .unmask(let message):
                guard message.round == participant.round else { return }
                await send(try participant.unmask(message))
                logger.info("Secure aggregation: unmasking shares sent", metadata: ["round.id": "\(participant.round)"])
                secure.reset(nil)
            }
        } catch {
            logger.warning("Secure aggregation: refused the aggregator's request", metadata: [
                "round.id": "\(participant.round)", "reason": "\(error)",
            ])
        }
    }

    private func send<M: WireMessage>(_ message: M, round: UInt64 = 0) async {
        do {
            try await link.send(message, round: round)
        } catch {
            logger.warning("Could not send", metadata: ["kind": "\(M.kind)", "error": "\(error)"])
        }
    }

    private func loadModel() -> (parameters: LSTMParameters<Float>, version: UInt64)? {
        guard let modelPath, FileManager.default.fileExists(atPath: modelPath) else { return nil }
        do {
            let model = try ModelFile.read(from: modelPath)
            return (model.parameters, model.modelVersion)
        } catch {
            logger.warning("Ignoring the local model file", metadata: ["path": "\(modelPath)", "error": "\(error)"])
            return nil
        }
    }

    static var nowMilliseconds: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// `data_directory/status.json`: whether this agent still trains, and its last round.
    private func writeStatus(_ status: AgentProtocol.Status) {
        state.withLock { $0.status = status }
        guard let statusPath else { return }
        var document: [String: Any] = [
            "agent_id": agentID, "participating": status.participating, "stopped_reason": status.stoppedReason,
            "last_round": status.lastRound, "model_version": status.modelVersion,
            "refused_rounds": status.refusedRounds, "last_refusal": status.lastRefusal,
        ]
        if let privacy = worker.privacyStatus() { document["privacy"] = privacy.document }
        do {
            let data = try JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys])
            try data.write(to: URL(fileURLWithPath: statusPath), options: .atomic)
        } catch {
            logger.warning("Could not write status", metadata: ["path": "\(statusPath)", "error": "\(error)"])
        }
    }
}

/// Runs an ``AgentSession`` in a `ServiceGroup` until a graceful shutdown: an edge agent's link to its aggregator,
/// and a regional aggregator's to the global one.
package struct AgentSessionService: Service {
    let session: AgentSession

    package init(session: AgentSession) { self.session = session }

    package func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await session.run() }
        } catch is CancellationError {
            // Graceful shutdown.
        }
    }
}
