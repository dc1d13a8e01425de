import Dispatch
package import FedIO
package import FedLogic
package import FedModel
import Foundation
package import Logging
import Synchronization

/// One finished round, for progress lines, status and benchmarks.
package struct RoundReport: Sendable, Codable {
    package var round: UInt64
    package var aggregated: Bool
    /// Agents whose updates went into the model.
    package var agents: [String]
    package var enrolledAgents: Int
    package var liveAgents: Int
    package var modelVersion: UInt64
    /// Rejections by reason during this round.
    package var rejections: [String: Int]
    /// Held-out evaluation of the model the round started from (``evaluatedModelVersion``).
    package var evaluatedModelVersion: UInt64
    package var evaluatedUsers: Int
    package var top1: Double
    package var top10: Double
    package var heldOutLoss: Double
    package var seconds: Double
    /// Seconds from the close of collection to the checkpoint being durable.
    package var closeSeconds: Double

    enum CodingKeys: String, CodingKey {
        case round, aggregated, agents, rejections, top1, top10, seconds
        case enrolledAgents = "enrolled_agents", liveAgents = "live_agents", modelVersion = "model_version"
        case evaluatedModelVersion = "evaluated_model_version", evaluatedUsers = "evaluated_users"
        case heldOutLoss = "held_out_loss", closeSeconds = "close_seconds"
    }
}

/// Why the aggregator could not start.
package enum AggregatorError: Error, CustomStringConvertible, Sendable {
    case state(String)
    case incompatibleCheckpoint(String)

    package var description: String {
        switch self {
        case let .state(why): "state directory: \(why)"
        case let .incompatibleCheckpoint(why):
            "the checkpoint does not fit this configuration: \(why). Point state_directory elsewhere to start a new "
                + "federation, or restore the configuration it was made with"
        }
    }
}

/// The aggregator at work: the agent-facing ROUTER (CURVE, allow-list), the PUB announcements, the
/// round driver (deadline, quorum, FedAvg with the server optimizer), crash-safe checkpoints after
/// every round, model export, and snapshots for late and reconnecting agents.
package final class AggregatorServer: Sendable {
    package let configuration: AggregatorConfiguration
    package let router: ZMQChannel
    package let publisher: ZMQChannel
    package let zap: ZAPAuthenticator
    private let gate: AggregatorGate
    private let signer: AnnouncementSigner
    private let coordinator: RoundCoordinator
    private let checkpoints: CheckpointStore
    private let modelsDirectory: String
    private let shape: LSTMShape
    private let logger: Logger
    private let onRound: @Sendable (RoundReport) -> Void
    /// The current model as a ``ModelFile`` (what agents download), and when each agent was last heard.
    private let modelFile: Mutex<[UInt8]>
    private let lastSeen = Mutex<[String: ContinuousClock.Instant]>([:])
    private let exports = DispatchQueue(label: "feddrift.model-export")
    /// The broadcast drift threshold (smoothed across rounds); empty until the first histograms.
    private let thresholds = Mutex<ThresholdSmoother>(ThresholdSmoother())
    /// An agent counts as live when heard within this window (agents send a heartbeat every 2 s).
    static let liveWindow: Duration = .seconds(7)

    /// Loads or creates the state, binds both sockets (ZAP first, so no client is ever admitted unchecked).
    package init(configuration: AggregatorConfiguration, identity: NodeIdentity, agents: [String: NodePublicIdentity],
                 context: ZMQContext, logger: Logger, onRound: @escaping @Sendable (RoundReport) -> Void = { _ in })
        throws
    {
        self.configuration = configuration
        self.logger = logger
        self.onRound = onRound
        guard let shape = configuration.model.shape else {
            throw ConfigError.invalidValue(key: "model.preset", value: configuration.model.preset, reason: "unknown")
        }
        self.shape = shape
        let state = configuration.stateDirectory
        modelsDirectory = (state as NSString).appendingPathComponent("models")
        do {
            try FileManager.default.createDirectory(atPath: modelsDirectory, withIntermediateDirectories: true)
        } catch {
            throw AggregatorError.state("cannot create \(modelsDirectory): \(error.localizedDescription)")
        }
        checkpoints = try CheckpointStore(path: (state as NSString).appendingPathComponent("checkpoint.sqlite"))
        let checkpoint = try checkpoints.load()
        let parameters: LSTMParameters<Float>
        if let checkpoint {
            guard checkpoint.parameters.shape == shape else {
                throw AggregatorError.incompatibleCheckpoint(
                    "it holds a \(checkpoint.parameters.shape) model, model.preset is \(configuration.model.preset)")
            }
            parameters = checkpoint.parameters
            logger.notice("Resumed from checkpoint", metadata: [
                "round.completed": "\(checkpoint.round)", "model.version": "\(checkpoint.modelVersion)",
                "checkpoint": "\(checkpoints.path)",
            ])
        } else {
            parameters = LSTMParameters(shape: shape, seed: configuration.model.seed)
            logger.notice("New federation: initial model", metadata: [
                "model.preset": "\(configuration.model.preset)", "model.parameters": "\(parameters.values.count)",
                "model.seed": "\(configuration.model.seed)",
            ])
        }
        let h = configuration.rounds.hyperparameters
        coordinator = RoundCoordinator(
            parameters: parameters.values, round: checkpoint?.round ?? 0, modelVersion: checkpoint?.modelVersion ?? 0,
            enrolled: Set(agents.keys), minAgents: configuration.rounds.minAgents,
            maxUpdateNorm: configuration.serverOptimizer.maxUpdateNorm,
            clipNorm: h.noiseMultiplier == 0 ? h.clipNorm : nil,
            averaging: FederatedAveraging(denominator: configuration.denominator,
                                          serverOptimizer: configuration.serverOptimizer.make()),
            optimizerState: checkpoint?.optimizerState ?? [], agentRecords: checkpoint?.agents ?? [:],
            adaptiveClipping: configuration.rounds.adaptiveClipping, initialClipNorm: checkpoint?.clipNorm ?? h.clipNorm)
        modelFile = Mutex(ModelFile.encode(parameters, modelVersion: checkpoint?.modelVersion ?? 0))
        gate = AggregatorGate(aggregatorID: configuration.id, identity: identity, agents: agents)
        signer = AnnouncementSigner(identity: identity)

        zap = try ZAPAuthenticator(context: context,
                                   allowList: Dictionary(uniqueKeysWithValues: agents.map { ($0.value.box, $0.key) }))
        var options = ZMQSocketOptions()
        options.curve = .server(keys: identity.box)
        options.maxMessageBytes = Int64(configuration.maxMessageBytes)
        options.heartbeat = .init(intervalMilliseconds: 1_000, timeoutMilliseconds: 5_000, ttlMilliseconds: 10_000)
        var routerOptions = options
        routerOptions.routerMandatory = true
        do {
            router = try ZMQChannel(context: context, configuration: .init(
                kind: .router, options: routerOptions, bind: [configuration.listen]))
            publisher = try ZMQChannel(context: context, configuration: .init(
                kind: .pub, options: options, bind: [configuration.announce]))
        } catch {
            zap.close()
            throw error
        }
        if checkpoint == nil {
            try save(AggregatorCheckpoint(round: 0, modelVersion: 0, parameters: parameters, optimizerState: [],
                                          agents: [:]))
        }
    }

    /// Runs rounds until cancelled, or until `rounds.max_rounds` rounds ran in this process.
    package func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.intake() }
            group.addTask { await self.reannounce() }
            try await self.driveRounds()
            group.cancelAll()
        }
        flushExports()
    }

    package func close() {
        flushExports()
        router.close()
        publisher.close()
        zap.close()
    }

    // MARK: - Rounds

    private func driveRounds() async throws {
        let rounds = configuration.rounds
        var completed = 0
        while !Task.isCancelled && (rounds.maxRounds == 0 || completed < rounds.maxRounds) {
            try await waitForLiveAgents(rounds.minAgents)
            let started = ContinuousClock.now
            let rejectionsBefore = await coordinator.rejections
            let timeout = Duration.milliseconds(Int64(rounds.timeoutSeconds * 1000))
            let deadlineMilliseconds = Int64(Date().timeIntervalSince1970 * 1000) + Int64(rounds.timeoutSeconds * 1000)
            var hyperparameters = rounds.hyperparameters
            hyperparameters.clipNorm = await coordinator.clipNorm
            let announcement = await coordinator.open(deadline: started + timeout) { round, version in
                RoundPlan(round: round, modelVersion: version, deadlineMilliseconds: deadlineMilliseconds,
                          minAgents: rounds.minAgents, hyperparameters: hyperparameters)
            }
            logger.info("Round open", metadata: [
                "round.id": "\(announcement.round)", "model.version": "\(announcement.modelVersion)",
                "round.deadline_s": "\(rounds.timeoutSeconds)", "agents.live": "\(liveAgents())",
            ])
            await announce(announcement.wire)
            while await !coordinator.isReadyToClose(now: .now) {
                try await Task.sleep(for: .milliseconds(5))
            }
            let closing = ContinuousClock.now
            let (outcome, evaluation) = await coordinator.closeWithEvaluation()
            try await saveState()
            let rejectionsAfter = await coordinator.rejections
            var report = RoundReport(
                round: announcement.round, aggregated: false, agents: [], enrolledAgents: gate.enrolledAgents.count,
                liveAgents: liveAgents(), modelVersion: await coordinator.modelVersion,
                rejections: rejectionsAfter.merging(rejectionsBefore) { $0 - $1 }.filter { $0.value > 0 },
                evaluatedModelVersion: evaluation.modelVersion, evaluatedUsers: evaluation.users,
                top1: evaluation.top1, top10: evaluation.top10, heldOutLoss: evaluation.meanLoss,
                seconds: (ContinuousClock.now - started).inSeconds, closeSeconds: (ContinuousClock.now - closing).inSeconds)
            switch outcome {
            case let .aggregated(_, agents):
                report.aggregated = true
                report.agents = agents
                logger.info("Round aggregated, checkpoint saved", metadata: [
                    "round.id": "\(report.round)", "agents.accepted": "\(agents.joined(separator: ","))",
                    "model.version": "\(report.modelVersion)", "round.seconds": "\(report.seconds)",
                ])
            case let .failedQuorum(round, received, required):
                logger.warning("Round failed: quorum not reached by the deadline; model unchanged", metadata: [
                    "round.id": "\(round)", "updates.received": "\(received)", "quorum": "\(required)",
                ])
            }
            await calibrateThreshold(round: announcement.round)
            await writeStatus(report)
            onRound(report)
            completed += 1
        }
    }

    /// Turns the round's merged DP histograms into the next threshold and broadcasts it.
    private func calibrateThreshold(round: UInt64) async {
        // Too few scored users (e.g. before live scoring started) leave only noise: keep the last threshold.
        guard let merged = await coordinator.closedHistogram, merged.reduce(0, { $0 + max(0, $1) }) >= 100,
              let raw = DriftHistogram.threshold(merged: merged, targetRate: configuration.drift.targetAlertRate) else { return }
        let smoothed = thresholds.withLock { smoother in
            smoother.weight = configuration.drift.smoothing
            return smoother.update(raw)
        }
        logger.info("Drift threshold calibrated from the agents' DP histograms", metadata: [
            "round.id": "\(round)", "threshold.round": "\(raw)", "threshold.smoothed": "\(smoothed)",
            "users.estimated": "\(Int(merged.reduce(0) { $0 + max(0, $1) }))",
        ])
        await announce(DriftThresholdsMessage(round: round, thresholds: [Float(smoothed)]))
    }

    private var currentThresholds: [Float] {
        thresholds.withLock { smoother in smoother.current.map { [Float($0)] } ?? [] }
    }

    /// `status.json` in the state directory: the last round and totals, for operators and scripts.
    private func writeStatus(_ report: RoundReport) async {
        struct Status: Encodable {
            var aggregatorID: String
            var lastRound: RoundReport
            var rejectionsTotal: [String: Int]
            var agents: [String: [String: UInt64]]
            enum CodingKeys: String, CodingKey {
                case aggregatorID = "aggregator_id", lastRound = "last_round", rejectionsTotal = "rejections_total", agents
            }
        }
        let records = await coordinator.agentRecords
        let status = Status(
            aggregatorID: configuration.id, lastRound: report, rejectionsTotal: await coordinator.rejections,
            agents: records.mapValues { ["last_round": $0.lastRound, "accepted": UInt64($0.acceptedUpdates),
                                         "rejected": UInt64($0.rejectedUpdates)] })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let path = (configuration.stateDirectory as NSString).appendingPathComponent("status.json")
        do {
            try encoder.encode(status).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            logger.warning("Could not write status", metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }

    /// Waits until at least `count` enrolled agents were heard recently.
    private func waitForLiveAgents(_ count: Int) async throws {
        var logged = false
        while liveAgents() < count {
            if !logged {
                logger.info("Waiting for agents", metadata: ["agents.live": "\(liveAgents())", "quorum": "\(count)"])
                logged = true
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    private func liveAgents() -> Int {
        let now = ContinuousClock.now
        return lastSeen.withLock { seen in seen.values.filter { now - $0 < Self.liveWindow }.count }
    }

    /// Checkpoint (atomic SQLite transaction, fsync'd), then the exported model file.
    private func saveState() async throws {
        try save(await coordinator.checkpoint(shape: shape))
    }

    /// The checkpoint is durable before this returns; the model export (a convenience copy for
    /// operators, not needed to resume) is written in the background, in order, off the round's path.
    private func save(_ checkpoint: AggregatorCheckpoint) throws {
        let file = ModelFile.encode(checkpoint.parameters, modelVersion: checkpoint.modelVersion)
        try checkpoints.save(checkpoint, encodedModel: file)
        modelFile.withLock { $0 = file }
        let version = checkpoint.modelVersion
        let path = (modelsDirectory as NSString).appendingPathComponent("model-v\(version).fdlm")
        exports.async { [logger] in
            guard !FileManager.default.fileExists(atPath: path) else { return }
            do {
                try ModelFile.write(encoded: file, to: path)
                self.pruneModels(newest: version)
            } catch {
                logger.warning("Could not export the model", metadata: ["path": "\(path)", "error": "\(error)"])
            }
        }
    }

    /// Waits until every model export queued so far is on disk.
    package func flushExports() { exports.sync {} }

    private func pruneModels(newest: UInt64) {
        guard newest >= UInt64(configuration.keepModels) else { return }
        let oldest = newest - UInt64(configuration.keepModels) + 1
        let names = (try? FileManager.default.contentsOfDirectory(atPath: modelsDirectory)) ?? []
        for name in names where name.hasPrefix("model-v") && name.hasSuffix(".fdlm") {
            if let version = UInt64(name.dropFirst(7).dropLast(5)), version < oldest {
                try? FileManager.default.removeItem(atPath: (modelsDirectory as NSString).appendingPathComponent(name))
            }
        }
    }

    // MARK: - Announcements

    private func announce(_ message: some WireMessage) async {
        do {
            try await publisher.send(signer.frames(message))
        } catch {
            logger.warning("Could not publish announcement", metadata: ["error": "\(error)"])
        }
    }

    /// Re-publishes the open round every second, so an agent whose subscription was still connecting
    /// when it was first announced (the PUB/SUB slow joiner) hears it anyway.
    private func reannounce() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            if let open = await coordinator.announcement { await announce(open.wire) }
            let current = currentThresholds
            if !current.isEmpty { await announce(DriftThresholdsMessage(round: await coordinator.round, thresholds: current)) }
        }
    }

    // MARK: - Intake

    private func intake() async throws {
        for try await message in router.messages {
            let openRound: UInt64? = if case .collecting(let round, _) = await coordinator.phase { round } else { nil }
            switch gate.open(message, openRound: openRound) {
            case .success(let request):
                lastSeen.withLock { $0[request.agentID] = .now }
                await handle(request, openRound: openRound)
            case .failure(let rejection):
                await coordinator.recordRejection(reason: rejection.reason, agentID: rejection.agentID)
                logger.warning("Rejected message", metadata: [
                    "reason": "\(rejection.reason)", "detail": "\(rejection.detail)",
                    "agent.id": "\(rejection.agentID ?? "-")",
                ])
                if let agentID = rejection.agentID, let routingID = rejection.routingID {
                    await reply(Verdict(round: openRound ?? 0, accepted: false, reason: rejection.reason),
                                to: agentID, routingID: routingID)
                }
            }
        }
    }

    private func handle(_ request: AggregatorGate.Request, openRound: UInt64?) async {
        let agentID = request.agentID
        switch request.body {
        case .hello(let hello):
            let snapshot = await coordinator.snapshot(for: agentID)
            logger.info("Agent registered: sealed hello opened, signature verified", metadata: [
                "agent.id": "\(agentID)", "agent.version": "\(hello.softwareVersion)",
                "round.id": "\(snapshot.round)", "round.awaiting": "\(snapshot.awaiting)",
            ])
            let welcome = Welcome(aggregatorID: configuration.id, currentRound: snapshot.round,
                                  enrolledAgents: UInt32(gate.enrolledAgents.count), modelVersion: snapshot.modelVersion,
                                  openRound: snapshot.open?.wire, awaitingUpdate: snapshot.awaiting,
                                  thresholds: currentThresholds)
            await reply(welcome, to: agentID, routingID: request.routingID)
        case .heartbeat:
            break
        case .modelRequest(let wanted):
            let file = modelFile.withLock { $0 }
            let version = await coordinator.modelVersion
            let chunks = ModelChunk.chunks(of: file, modelVersion: version)
            logger.debug("Sending model", metadata: [
                "agent.id": "\(agentID)", "model.version": "\(version)", "agent.held_version": "\(wanted.heldVersion)",
                "chunks": "\(chunks.count)", "bytes": "\(file.count)",
            ])
            for chunk in chunks { await reply(chunk, to: agentID, routingID: request.routingID) }
        case .evaluation(let report):
            await coordinator.record(EvaluationRelease(report))
        case .histogram(let report):
            await coordinator.record(HistogramRelease(report))
        case .update(let submission):
            let update = ModelUpdate(submission, from: agentID)
            do {
                try await coordinator.accept(update)
                logger.info("Update accepted", metadata: [
                    "agent.id": "\(agentID)", "round.id": "\(submission.round)", "update.users": "\(submission.users)",
                    "message.bytes": "\(request.sealedBytes)",
                ])
                await reply(Verdict(round: submission.round, accepted: true, reason: ""), to: agentID,
                            routingID: request.routingID)
            } catch {
                logger.warning("Update rejected", metadata: [
                    "agent.id": "\(agentID)", "reason": "\(error.reason)", "detail": "\(error.description)",
                ])
                await reply(Verdict(round: submission.round, accepted: false, reason: error.reason), to: agentID,
                            routingID: request.routingID)
            }
        }
    }

    private func reply(_ message: some WireMessage, to agentID: String, routingID: ByteBlock) async {
        do {
            try await router.send(gate.reply(message, to: agentID, routingID: routingID))
        } catch {
            // The agent left (EHOSTUNREACH with ROUTER_MANDATORY); it gets a snapshot when it returns.
            logger.debug("Could not reply", metadata: ["agent.id": "\(agentID)", "error": "\(error)"])
        }
    }
}
