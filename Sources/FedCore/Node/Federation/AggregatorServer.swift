
package import FedIO
package import FedLogic
import FedModel
package import Foundation
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
    /// The updates went through secure aggregation: the aggregator saw only their sum.
    package var secureAggregation = false
    /// The alert rates the agents' (DP) what-if releases of this round showed, when any agent sent one.
    package var alertsPer10kEvents: Double?
    package var churnPer1kShopperDays: Double?
    /// Regions whose demand counts this round carried, and the demand-trend warnings they raised.
    package var demandRegions = 0
    package var demandTrends: [DemandTrendWarning] = []
    /// A regional aggregator's round: its sum went up to the global aggregator instead of updating a model here.
    package var forwarded = false

    enum CodingKeys: String, CodingKey {
        case round, aggregated, agents, rejections, top1, top10, seconds
        case enrolledAgents = "enrolled_agents", liveAgents = "live_agents", modelVersion = "model_version"
        case evaluatedModelVersion = "evaluated_model_version", evaluatedUsers = "evaluated_users"
        case heldOutLoss = "held_out_loss", closeSeconds = "close_seconds", secureAggregation = "secure_aggregation"
        case alertsPer10kEvents = "alerts_per_10k_events", churnPer1kShopperDays = "churn_per_1k_shopper_days"
        case demandRegions = "demand_regions", demandTrends = "demand_trends", forwarded
    }
}

/// Where the aggregator keeps what it must not lose.
package enum AggregatorState: Sendable {
    /// `state_directory/checkpoint.sqlite`.
    case sqlite(CheckpointStore)
    /// PostgreSQL, shared by a highly available pair; every write fenced by this process's lease.
    case postgres(PostgresStateStore)

    package var location: String {
        switch self {
        case .sqlite(let store): store.path
        case .postgres(let store): store.location
        }
    }

    /// Commits `checkpoint` (SQLite with synchronous=FULL waits for the disk: on `queue`, off the cooperative pool).
    func save(_ checkpoint: AggregatorCheckpoint, encodedModel: [UInt8], queue: BlockingQueue) async throws {
        switch self {
        case .sqlite(let store): try await queue.run { try store.save(checkpoint, encodedModel: encodedModel) }
        case .postgres(let store): try await store.save(checkpoint, encodedModel: encodedModel)
        }
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

/// The aggregator at work: the agent-facing ROUTER (CURVE, allow-list), the PUB announcements, and the
/// shared state its services work on — the ``RoundCoordinator`` actor (the open round, liveness,
/// thresholds), the checkpoint store and the current model file.
///
/// The work itself is four services (``services(onRound:)``), each a thin loop that a `ServiceGroup`
/// runs and stops: ``UpdateIntakeService`` (ROUTER messages through the gate into the coordinator),
/// ``RoundDriverService`` (the ``RoundDriver`` state machine: quorum, deadline, close, checkpoint,
/// calibrate), ``AnnouncerService`` (round and threshold announcements, re-published every second for
/// slow joiners) and ``StatusExportService`` (status.json, model exports and progress, off the
/// round's path).
package final class AggregatorServer: Sendable {
    package let configuration: AggregatorConfiguration
    package let router: ZMQChannel
    package let publisher: ZMQChannel
    package let zap: ZAPAuthenticator
    let gate: AggregatorGate
    let signer: AnnouncementSigner
    let coordinator: RoundCoordinator
    /// The open round's secure aggregation, when rounds run with it.
    let secureDesk: SecureRoundDesk
    /// What `/metrics` serves.
    package let metrics = AggregatorMetrics()
    /// Closed rounds for the dashboard (`state_directory/history.jsonl`).
    package let history: RoundHistory
    /// The agents' demand counts and the demand-trend detector.
    package let trends: DemandTrendDesk
    /// The shared catalog (`catalog:`), to name the categories of trend warnings.
    let catalog: CategoryCatalog?
    /// With `trend_sinks`: the warnings' outbox (`trends.sqlite`) and its delivery to the sinks.
    package let trendOutbox: (store: TrendStore, delivery: AlertDelivery)?
    /// Where checkpoints go: `state_directory/checkpoint.sqlite`, or PostgreSQL for a highly available pair.
    let state: AggregatorState
    /// A new federation's round-0 checkpoint, when the state is PostgreSQL (saved as the driver starts;
    /// with SQLite it is saved in `init`).
    let initialCheckpoint: (checkpoint: AggregatorCheckpoint, model: [UInt8])?
    /// A regional aggregator's link to its upstream worker: rounds open when the global aggregator's do, and their
    /// sums go up instead of updating the model here (nil: a global or flat aggregator).
    package let regional: RegionalBridge?
    let modelsDirectory: String
    let shape: LSTMShape
    let logger: Logger
    let driverSettings: RoundDriver.Settings
    /// Called with each round's report, after its status was written (progress lines, benchmarks).
    let onRound: @Sendable (RoundReport) -> Void
    /// The last completed round when this process started.
    let startRound: UInt64
    /// The thresholds the checkpoint restored (nil: not calibrated yet).
    let startThresholds: AlertThresholds?
    /// Checkpoint commits (the round's path), and exports and status files (off it), each in order.
    let checkpointQueue = BlockingQueue(label: "feddrift.checkpoint")
    let exportQueue = BlockingQueue(label: "feddrift.export")
    /// The current model as a ``ModelFile`` (what agents download).
    let modelFile: Mutex<[UInt8]>
    /// What the driver hands to the status/export service: round reports and new model files.
    let exports: AsyncStream<StatusExportService.Item>.Continuation
    private let exportItems: AsyncStream<StatusExportService.Item>

    /// Loads or creates the state, binds both sockets (ZAP first, so no client is ever admitted unchecked).
    /// `shared`: the PostgreSQL state this process leads, with the checkpoint it loaded (nil: SQLite in
    /// `state_directory`).
    package init(configuration: AggregatorConfiguration, identity: NodeIdentity, agents: [String: NodePublicIdentity],
                 context: ZMQContext, logger: Logger,
                 shared: (store: PostgresStateStore, checkpoint: AggregatorCheckpoint?)? = nil,
                 regional: RegionalBridge? = nil,
                 onRound: @escaping @Sendable (RoundReport) -> Void = { _ in })
        throws
    {
        self.configuration = configuration
        self.regional = regional
        (exportItems, exports) = AsyncStream.makeStream(of: StatusExportService.Item.self)
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
        history = RoundHistory(path: (state as NSString).appendingPathComponent("history.jsonl"))
        trends = DemandTrendDesk(categories: shape.categories, settings: configuration.trends,
                                 maxUsers: configuration.secureMaxUsers)
        catalog = try configuration.loadCatalog()
        if configuration.trendSinks.isEmpty {
            trendOutbox = nil
        } else {
            let store = try TrendStore(path: (state as NSString).appendingPathComponent("trends.sqlite"))
            trendOutbox = (store, try AlertDelivery(store: store, sinks: configuration.trendSinks, noun: "demand-trend warnings"))
        }
        if history.skippedLines > 0 {
            logger.warning("Round history: lines that do not decode were skipped", metadata: [
                "path": "\(history.path)", "lines": "\(history.skippedLines)",
            ])
        }
        let checkpoint: AggregatorCheckpoint?
        if let shared {
            self.state = .postgres(shared.store)
            checkpoint = shared.checkpoint
        } else {
            let store = try CheckpointStore(path: (state as NSString).appendingPathComponent("checkpoint.sqlite"))
            self.state = .sqlite(store)
            checkpoint = try store.load()
        }
        let parameters: LSTMParameters<Float>
        if let checkpoint {
            guard checkpoint.parameters.shape == shape else {
                throw AggregatorError.incompatibleCheckpoint(
                    "it holds a \(checkpoint.parameters.shape) model, model.preset is \(configuration.model.preset)")
            }
            parameters = checkpoint.parameters
            logger.notice("Resumed from checkpoint", metadata: [
                "round.completed": "\(checkpoint.round)", "model.version": "\(checkpoint.modelVersion)",
                "checkpoint": "\(self.state.location)",
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
                                          serverOptimizer: configuration.serverOptimizer.make(),
                                          rule: configuration.serverOptimizer.rule),
            optimizerState: checkpoint?.optimizerState ?? [], agentRecords: checkpoint?.agents ?? [:],
            adaptiveClipping: configuration.rounds.adaptiveClipping, initialClipNorm: checkpoint?.clipNorm ?? h.clipNorm,
            thresholds: checkpoint?.thresholds,
            // A private federation accepts an update only with its verified privacy-ledger receipt.
            requireReceipts: !configuration.isNonPrivate,
            // No agent's report may count more users than all agents may sample in a round.
            maxUsers: configuration.secureMaxUsers)
        modelFile = Mutex(ModelFile.encode(parameters, modelVersion: checkpoint?.modelVersion ?? 0))
        let timeout = configuration.rounds.timeoutSeconds
        var driverSettings = RoundDriver.Settings(
            minAgents: configuration.rounds.minAgents, enrolledAgents: agents.count,
            timeoutMilliseconds: Int64(timeout * 1000), maxRounds: configuration.rounds.maxRounds,
            calibration: configuration.drift.calibration, churnCalibration: configuration.drift.churnCalibration,
            initialThresholds: configuration.drift.initialThresholds)
        driverSettings.paced = regional != nil
        self.driverSettings = driverSettings
        startRound = checkpoint?.round ?? 0
        startThresholds = checkpoint?.thresholds
        gate = AggregatorGate(aggregatorID: configuration.id, identity: identity, agents: agents)
        secureDesk = SecureRoundDesk(enrolled: Array(agents.keys))
        signer = AnnouncementSigner(identity: identity)

        zap = try ZAPAuthenticator(context: context,
                                   allowList: Dictionary(uniqueKeysWithValues: agents.map { ($0.value.box, $0.key) }))
        var options = ZMQSocketOptions()
        options.curve = .server(keys: identity.box)
        options.maxMessageBytes = Int64(configuration.maxMessageBytes)
        // No ZMTP heartbeats of its own: libzmq 4.3.4 (Debian 12) aborts the whole process
        // (`Assertion failed: !_io_error (src/stream_engine_base.cpp:331)`) when a heartbeat timer fires on a
        // connection whose input stopped after a bad frame — one duplicated or reordered CURVE message on the
        // path was enough (NetworkFaultTests). Dead agents are still dropped: each agent asks for a TTL in
        // its own heartbeats (ZMQ_HEARTBEAT_TTL), and liveness counts the agents' sealed heartbeats.
        var routerOptions = options
        routerOptions.routerMandatory = true
        // At most this many replies wait for one agent (two whole models and then some); beyond, replies to
        // it fail (it recovers with a snapshot when it reconnects) instead of holding memory or holding up
        // other agents' replies.
        let modelChunks = (modelFile.withLock { $0.count } + ModelChunk.maxChunkBytes - 1) / ModelChunk.maxChunkBytes
        routerOptions.sendHighWaterMark = Int32(clamping: 2 * modelChunks + 32)
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
            let initial = AggregatorCheckpoint(round: 0, modelVersion: 0, parameters: parameters, optimizerState: [],
                                               agents: [:])
            let file = ModelFile.encode(parameters, modelVersion: 0)
            if case .sqlite(let store) = self.state {
                try store.save(initial, encodedModel: file)
                initialCheckpoint = nil
            } else {
                initialCheckpoint = (initial, file)
            }
            exports.yield(.model(file, version: 0))
        } else {
            initialCheckpoint = nil
        }
    }


    /// The aggregator's services, in start order; the round driver's end (after `rounds.max_rounds`)
    /// ends the others: it finishes the status stream, and the group shuts the rest down gracefully.
    package func services()
        -> (intake: UpdateIntakeService, driver: RoundDriverService, announcer: AnnouncerService,
            status: StatusExportService)
    {
        let (wakeups, wake) = AsyncStream.makeStream(of: RoundDriver.Event.self)
        return (UpdateIntakeService(server: self, wake: wake), RoundDriverService(server: self, wakeups: wakeups, wake: wake),
                AnnouncerService(server: self), StatusExportService(server: self, items: exportItems))
    }

    /// Runs every service until the driver finishes (or the task is cancelled); used where no
    /// `ServiceGroup` runs them (benchmarks). Returns after the status service wrote everything.
    package func run() async throws {
        let services = services()
        async let status: Void = services.status.run()
        defer { exports.finish() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await services.intake.run() }
            group.addTask { try await services.announcer.run() }
            try await services.driver.run()
            group.cancelAll()
        }
        exports.finish()
        try await status
    }

    package func close() {
        exports.finish()
        router.close()
        publisher.close()
        zap.close()
    }

    /// Signs `message` and publishes it to every subscribed agent.
    func announce(_ message: some WireMessage) async {
        do {
            try await publisher.send(signer.frames(message))
        } catch {
            logger.warning("Could not publish announcement", metadata: ["error": "\(error)"])
        }
    }

    /// Seals `message` to one agent and sends it on the connection it came from.
    func reply(_ message: some WireMessage, to agentID: String, routingID: ByteBlock) async {
        do {
            try await router.send(gate.reply(message, to: agentID, routingID: routingID))
        } catch {
            // The agent left (EHOSTUNREACH with ROUTER_MANDATORY); it gets a snapshot when it returns.
            logger.debug("Could not reply", metadata: ["agent.id": "\(agentID)", "error": "\(error)"])
        }
    }

    static var nowMilliseconds: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Gauges that change between rounds (live agents), before a scrape.
    package func refreshMetrics() async {
        metrics.recordLiveAgents(await coordinator.liveAgents(at: .now))
    }

    /// `/status`: the federation now (round, phase, live agents, quorum) and, under `last`, the
    /// `status.json` the last round wrote.
    package func liveStatus() async -> Data {
        let now = ContinuousClock.now
        let live = await coordinator.liveAgents(at: now)
        metrics.recordLiveAgents(live)
        let phase = await coordinator.phase
        var document: [String: Any] = [
            "aggregator_id": configuration.id, "round": await coordinator.round,
            "model_version": await coordinator.modelVersion, "agents_live": live,
            "agents_enrolled": gate.enrolledAgents.count, "min_agents": configuration.rounds.minAgents,
            "below_quorum": live < configuration.rounds.minAgents, "privacy": configuration.privacySummary,
        ]
        if case .collecting(let round, let deadline) = phase {
            document["phase"] = "collecting"
            document["open_round"] = round
            document["seconds_to_deadline"] = max(0, (deadline - now).inSeconds)
        } else {
            document["phase"] = "waiting"
        }
        let path = (configuration.stateDirectory as NSString).appendingPathComponent("status.json")
        if let data = FileManager.default.contents(atPath: path), let last = try? JSONSerialization.jsonObject(with: data) {
            document["last"] = last
        }
        return (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])) ?? Data("{}".utf8)
    }

    /// The dashboard page (`/dashboard`): the federation now, its agents, and its history.
    package func dashboard() async -> String {
        let now = ContinuousClock.now
        let heard = await coordinator.secondsSinceHeard(at: now)
        let records = await coordinator.agentRecords
        let epsilons = metrics.epsilonSpent
        let phase = await coordinator.phase
        var open: (round: UInt64, seconds: Double)?
        if case .collecting(let round, let deadline) = phase { open = (round, max(0, (deadline - now).inSeconds)) }
        let live = RoundCoordinator.liveWindow.inSeconds
        let agents = configuration.agents.map { agent in
            DashboardPages.AgentRow(id: agent.id, live: heard[agent.id].map { $0 < live } ?? false,
                                    lastSeenSeconds: heard[agent.id], lastRound: records[agent.id]?.lastRound ?? 0,
                                    accepted: records[agent.id]?.acceptedUpdates ?? 0,
                                    rejected: records[agent.id]?.rejectedUpdates ?? 0,
                                    epsilonSpent: epsilons[agent.id], epsilonBudget: agent.epsilonBudget)
        }
        let federation = DashboardPages.Federation(
            aggregatorID: configuration.id, round: await coordinator.round, openRound: open?.round,
            secondsToDeadline: open?.seconds, modelVersion: await coordinator.modelVersion,
            liveAgents: await coordinator.liveAgents(at: now), minAgents: configuration.rounds.minAgents,
            privacy: configuration.privacySummary, alertBudgetPer10k: configuration.drift.alertBudgetPer10k,
            churnBudgetPer1kShopperDays: configuration.drift.churnBudgetPer1kShopperDays, agents: agents,
            history: history.recent)
        return DashboardPages.aggregator(federation)
    }

    /// Closes the secure-aggregation steps that are complete or due and sends what they produce. When
    /// the protocol ended with a sum, a task of its own unmasks it (on a dedicated thread: the intake
    /// keeps serving agents meanwhile), hands it to the coordinator and wakes the round driver; when it
    /// ended without one, the round closes at once. Returns whether the protocol ended.
    @discardableResult
    func advanceSecureAggregation(wake: AsyncStream<RoundDriver.Event>.Continuation) async -> Bool {
        let (messages, closed, result) = await secureDesk.advance(now: .now)
        for (stage, agents) in closed {
            logger.info("Secure aggregation step closed: \(stage.rawValue)", metadata: ["agents": "\(agents)"])
        }
        for (agentID, route, message) in messages {
            switch message {
            case .roster(let m): await reply(m, to: agentID, routingID: route)
            case .shares(let m): await reply(m, to: agentID, routingID: route)
            case .survivors(let m): await reply(m, to: agentID, routingID: route)
            case .unmask(let m): await reply(m, to: agentID, routingID: route)
            }
        }
        guard let result else { return false }
        switch result {
        case let .failed(round, reason):
            logger.warning("Secure aggregation ended without a sum: the round fails its quorum", metadata: [
                "round.id": "\(round)", "reason": "\(reason)",
            ])
            wake.yield(.deadlineReached(round: round))
        case .ready:
            Task { [self] in
                await unmask(result, wake: wake)
                await secureDesk.setUnmasking(false)
            }
        }
        return true
    }

    private func unmask(_ result: SecureRoundDesk.Result, wake: AsyncStream<RoundDriver.Event>.Continuation) async {
        switch result {
        case .failed:
            return
        case let .ready(round, secure, agents, dropped, users, clipCount):
            let started = ContinuousClock.now
            do {
                let words = try await onDedicatedThread { try secure.sum() }
                guard let open = await coordinator.announcement, open.round == round,
                      let release = open.hyperparameters.distributedRelease else { return }
                let update = ModelUpdate(agentID: "secure-sum", round: round, deltaSum: release.decode(words),
                                         users: users, clipCount: clipCount)
                try await coordinator.acceptAggregate(update, agents: agents)
                logger.info("Secure aggregation: sum unmasked (no single agent's update was visible)", metadata: [
                    "round.id": "\(round)", "agents": "\(agents.count)", "dropped": "\(dropped)",
                    "unmask.ms": "\(Int((ContinuousClock.now - started).inSeconds * 1000))",
                ])
                wake.yield(.aggregateAccepted(round: round))
            } catch {
                logger.warning("Secure aggregation: the sum was refused; the round fails its quorum", metadata: [
                    "round.id": "\(round)", "error": "\(error)",
                ])
            }
        }
    }
}
