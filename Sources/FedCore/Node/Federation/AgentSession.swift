package import FedIO
package import FedLogic
package import FedModel
import Foundation
package import Logging

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
    private let onModel: (@Sendable (LSTMParameters<Float>, UInt64) -> Void)?
    private let onThresholds: (@Sendable ([Float]) -> Void)?

    package init(configuration: EdgeAgentConfiguration, identity: NodeIdentity, aggregator: NodePublicIdentity,
                 context: ZMQContext, worker: any RoundWorker, logger: Logger, persistModel: Bool = true,
                 onModel: (@Sendable (LSTMParameters<Float>, UInt64) -> Void)? = nil,
                 onThresholds: (@Sendable ([Float]) -> Void)? = nil) throws {
        self.onModel = onModel
        self.onThresholds = onThresholds
        link = try AgentLink(context: context, configuration: configuration, identity: identity, aggregator: aggregator)
        subscriber = try ZMQChannel(context: context, configuration: .init(
            kind: .sub, options: AgentLink.options(configuration: configuration, identity: identity, aggregator: aggregator),
            connect: [configuration.announcements], subscriptions: [[]]))
        verifier = AnnouncementVerifier(aggregator: aggregator)
        self.worker = worker
        self.logger = logger
        agentID = configuration.id
        modelPath = persistModel ? configuration.modelPath : nil
        statusPath = persistModel ? (configuration.dataDirectory as NSString).appendingPathComponent("status.json") : nil
    }

    package func close() {
        link.close()
        subscriber.close()
    }

    private enum Event: Sendable {
        case direct(ZMQMessage)
        case announcement(ZMQMessage)
        case link(ZMQSocketEvent)
        case tick
        case finished(round: RoundPlan, Result<RoundWork, any Error>)
    }

    /// Runs until cancelled. Throws ``AgentLinkError/notEnrolled(agentID:publicKeyFile:)`` when the
    /// aggregator refuses this agent's key (a configuration error that retrying cannot fix).
    package func run() async throws {
        let (events, continuation) = AsyncStream.makeStream(of: Event.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { [link] in
                for try await message in link.messages { continuation.yield(.direct(message)) }
            }
            group.addTask { [subscriber] in
                for try await message in subscriber.messages { continuation.yield(.announcement(message)) }
            }
            group.addTask { [link] in
                for await event in link.events { continuation.yield(.link(event)) }
            }
            group.addTask {
                while !Task.isCancelled {
                    continuation.yield(.tick)
                    try await Task.sleep(for: .seconds(2))
                }
            }
            var state = State(model: loadModel())
            if let model = state.model { onModel?(model.parameters, model.version) }
            defer { continuation.finish() }
            for await event in events {
                try Task.checkCancellation()
                try await handle(event, state: &state, continuation: continuation, group: &group)
            }
            group.cancelAll()
        }
    }

    private struct State {
        var model: (parameters: LSTMParameters<Float>, version: UInt64)?
        var registered = false
        var chunks: [UInt32: [UInt8]] = [:]
        var chunkVersion: UInt64?
        var modelRequestedAt: ContinuousClock.Instant?
        /// A round waiting for the model, or announced while another round's work was running.
        var pending: RoundPlan?
        var working: UInt64?
        var handledRound: UInt64 = 0
        var lastWork: (round: UInt64, modelVersion: UInt64, work: RoundWork)?
        /// Set once the privacy budget refused a release: no more training, ever (the ledger only grows).
        var trainingStopped: String?
    }

    private func handle(_ event: Event, state: inout State, continuation: AsyncStream<Event>.Continuation,
                        group: inout ThrowingTaskGroup<Void, any Error>) async throws {
        switch event {
        case .link(let linkEvent):
            switch linkEvent.kind {
            case .handshakeSucceeded:
                logger.info("Connected to aggregator (CURVE handshake done); registering",
                            metadata: ["agent.id": "\(agentID)", "endpoint": "\(link.endpoint)"])
                state.registered = false
                await send(Hello(agentID: agentID, softwareVersion: FedDrift.version,
                                 sentAtMilliseconds: Self.nowMilliseconds))
            case .handshakeFailedAuthentication:
                throw AgentLinkError.notEnrolled(agentID: agentID, publicKeyFile: "identity.public")
            case .disconnected:
                logger.warning("Lost the aggregator; reconnecting with back-off", metadata: ["agent.id": "\(agentID)"])
            default:
                break
            }
        case .tick:
            if state.registered {
                await send(Heartbeat(sentAtMilliseconds: Self.nowMilliseconds, round: state.handledRound))
            } else {
                await send(Hello(agentID: agentID, softwareVersion: FedDrift.version,
                                 sentAtMilliseconds: Self.nowMilliseconds))
            }
        case .announcement(let message):
            do {
                let (kind, body) = try verifier.open(message)
                if kind == .roundOpen { await consider(RoundPlan(try RoundOpen(decoding: body)), resend: false, state: &state, continuation: continuation, group: &group) }
                if kind == .thresholds {
                    let message = try DriftThresholdsMessage(decoding: body)
                    if !message.thresholds.isEmpty {
                        onThresholds?(message.thresholds)
                        logger.info("Drift threshold from the aggregator", metadata: [
                            "round.id": "\(message.round)", "threshold": "\(message.thresholds)",
                        ])
                    }
                }
            } catch {
                logger.warning("Ignored an announcement", metadata: ["error": "\(error)"])
            }
        case .direct(let message):
            do {
                let (kind, payload) = try link.open(message)
                try await handleDirect(kind, payload, state: &state, continuation: continuation, group: &group)
            } catch {
                logger.warning("Ignored a message from the aggregator", metadata: ["error": "\(error)"])
            }
        case .finished(let round, let result):
            state.working = nil
            state.handledRound = max(state.handledRound, round.round)
            switch result {
            case .success(let work):
                state.lastWork = (round.round, round.modelVersion, work)
                logger.info("Trained local update", metadata: [
                    "round.id": "\(round.round)", "users.sampled": "\(work.sampledUsers)",
                    "users.clipped": "\(work.clippedUsers)", "loss.mean": "\(work.meanLoss)",
                    "seconds": "\(work.seconds)",
                ])
                await submit(work, round: round)
            case .failure(let error as PrivacyLedgerError):
                if case .budgetExceeded = error {
                    state.trainingStopped = error.description
                    logger.error("Privacy budget exhausted: no more training or update releases; still ingesting and scoring",
                                 metadata: ["round.id": "\(round.round)", "detail": "\(error)"])
                } else {
                    logger.error("Round work failed", metadata: ["round.id": "\(round.round)", "error": "\(error)"])
                }
            case .failure(let error):
                logger.error("Round work failed", metadata: ["round.id": "\(round.round)", "error": "\(error)"])
            }
            writeStatus(state)
            if let next = state.pending, next.round > round.round {
                state.pending = nil
                await consider(next, resend: false, state: &state, continuation: continuation, group: &group)
            }
        }
    }

    private func handleDirect(_ kind: MessageKind, _ payload: [UInt8], state: inout State,
                              continuation: AsyncStream<Event>.Continuation,
                              group: inout ThrowingTaskGroup<Void, any Error>) async throws {
        switch kind {
        case .welcome:
            let welcome = try Welcome(decoding: payload)
            state.registered = true
            if !welcome.thresholds.isEmpty { onThresholds?(welcome.thresholds) }
            logger.info("Registered: sealed hello accepted, sealed welcome opened", metadata: [
                "agent.id": "\(agentID)", "aggregator.id": "\(welcome.aggregatorID)",
                "round.id": "\(welcome.currentRound)", "model.version": "\(welcome.modelVersion)",
                "agents.enrolled": "\(welcome.enrolledAgents)",
            ])
            if let open = welcome.openRound, welcome.awaitingUpdate {
                await consider(RoundPlan(open), resend: true, state: &state, continuation: continuation, group: &group)
            } else if state.model?.version != welcome.modelVersion {
                await requestModel(state: &state)
            }
        case .modelChunk:
            let chunk = try ModelChunk(decoding: payload)
            if state.chunkVersion != chunk.modelVersion {
                state.chunks = [:]
                state.chunkVersion = chunk.modelVersion
            }
            state.chunks[chunk.index] = chunk.bytes
            guard state.chunks.count == Int(chunk.count) else { return }
            let file = (0..<chunk.count).flatMap { state.chunks[$0] ?? [] }
            state.chunks = [:]
            state.chunkVersion = nil
            state.modelRequestedAt = nil
            let model = try ModelFile.decode(file, path: "model v\(chunk.modelVersion) from the aggregator")
            state.model = (model.parameters, model.modelVersion)
            onModel?(model.parameters, model.modelVersion)
            logger.info("Received global model", metadata: [
                "model.version": "\(model.modelVersion)", "bytes": "\(file.count)",
            ])
            if let modelPath {
                do {
                    try ModelFile.write(model.parameters, modelVersion: model.modelVersion, to: modelPath)
                } catch {
                    logger.warning("Could not save the model locally", metadata: ["error": "\(error)"])
                }
            }
            if let pending = state.pending, state.working == nil {
                state.pending = nil
                await consider(pending, resend: false, state: &state, continuation: continuation, group: &group)
            }
        case .verdict:
            let verdict = try Verdict(decoding: payload)
            if verdict.accepted {
                logger.info("Update accepted by the aggregator", metadata: ["round.id": "\(verdict.round)"])
            } else {
                logger.warning("Aggregator refused a message", metadata: [
                    "round.id": "\(verdict.round)", "reason": "\(verdict.reason)",
                ])
            }
        default:
            logger.warning("Unexpected message from the aggregator", metadata: ["kind": "\(kind)"])
        }
    }

    /// Decides what to do about an open round: ignore it (old, handled, past its deadline), resend the
    /// update already computed for it (the aggregator restarted and lost it; re-sending the same
    /// update releases nothing new), fetch the model first, or start the work.
    private func consider(_ open: RoundPlan, resend: Bool, state: inout State,
                          continuation: AsyncStream<Event>.Continuation,
                          group: inout ThrowingTaskGroup<Void, any Error>) async {
        if let working = state.working {
            if open.round > working { state.pending = open }
            return
        }
        if let reason = state.trainingStopped {
            if open.round > state.handledRound {
                state.handledRound = open.round
                logger.notice("Not taking part in this round: training stopped", metadata: [
                    "round.id": "\(open.round)", "reason": "\(reason)",
                ])
            }
            return
        }
        if open.round <= state.handledRound {
            if resend, let last = state.lastWork, last.round == open.round, last.modelVersion == open.modelVersion {
                logger.info("Re-sending this round's update to the restarted aggregator", metadata: [
                    "round.id": "\(open.round)",
                ])
                await submit(last.work, round: open)
            }
            return
        }
        guard Self.nowMilliseconds < open.deadlineMilliseconds else {
            logger.warning("Round already past its deadline; skipping", metadata: ["round.id": "\(open.round)"])
            state.handledRound = open.round
            return
        }
        guard let model = state.model, model.version == open.modelVersion else {
            state.pending = open
            await requestModel(state: &state)
            return
        }
        state.working = open.round
        logger.info("Round open: training", metadata: [
            "round.id": "\(open.round)", "model.version": "\(open.modelVersion)",
            "sampling_rate": "\(open.hyperparameters.samplingRate)",
        ])
        let worker = self.worker
        group.addTask {
            let result: Result<RoundWork, any Error>
            do {
                result = .success(try await onDedicatedThread {
                    try worker.work(global: model.parameters, modelVersion: model.version, round: open)
                })
            } catch {
                result = .failure(error)
            }
            continuation.yield(.finished(round: open, result))
        }
    }

    private func requestModel(state: inout State) async {
        if let asked = state.modelRequestedAt, ContinuousClock.now - asked < .seconds(5) { return }
        state.modelRequestedAt = .now
        await send(ModelRequest(heldVersion: state.model?.version ?? 0))
    }

    private func submit(_ work: RoundWork, round: RoundPlan) async {
        if let evaluation = work.evaluation { await send(evaluation.wire) }
        if let histogram = work.histogram { await send(histogram.wire) }
        await send(work.submission.wire, round: round.round)
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
    private func writeStatus(_ state: State) {
        guard let statusPath else { return }
        let status: [String: Any] = [
            "agent_id": agentID, "participating": state.trainingStopped == nil,
            "stopped_reason": state.trainingStopped ?? "", "last_round": state.handledRound,
            "model_version": state.model?.version ?? 0,
        ]
        if let data = try? JSONSerialization.data(withJSONObject: status, options: [.prettyPrinted, .sortedKeys]) {
            try? data.write(to: URL(fileURLWithPath: statusPath), options: .atomic)
        }
    }
}
