import ArgumentParser
import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the aggregator: enroll agents, run federated rounds, checkpoint after each.",
        discussion: """
            Binds the agent-facing ROUTER (listen) and the announcement PUB (announce), both CURVE-encrypted \
            and open only to the enrolled agents' keys. Each round: announce, collect sealed updates until \
            every agent answered or the deadline passed, verify and average them (FedAvg with the server \
            optimizer), checkpoint atomically, export the model to state_directory/models. After a crash, \
            it resumes from the checkpoint at the same round with the same model. Prints one line per \
            round on stdout; logs go to stderr. Stops cleanly on SIGTERM or SIGINT.

            With a `postgres` section, the state is in PostgreSQL and two aggregator processes (same \
            identity, same agents) can share it: the first to take the lease leads, the other waits as a \
            standby and takes over at the same round with the same model when the leader dies or stops \
            renewing its lease (docs/OPERATIONS.md, "A highly available aggregator").
            """
    )

    @Option(name: .long, help: "The aggregator's YAML configuration (see configs/aggregator.yaml).")
    var config: String

    @Option(name: .long, help: "Override the agent-facing endpoint from the configuration.")
    var listen: String?

    @Option(name: .long, help: "Stop after this many rounds (overrides rounds.max_rounds; 0 = until stopped).")
    var rounds: Int?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(name: .long, help: "Log lines: text (for people) or json (one object per line, for log shippers).")
    var logFormat: LogFormat = .text

    func run() async throws {
        let logger = Logger.bootstrapForTool(label: "aggregator", level: logLevel, format: logFormat)
        if let armed = try Failpoint.checkEnvironment() { logger.warning("\(armed)") }
        var configuration = try AggregatorConfiguration.load(path: config)
        if let listen { configuration.listen = listen }
        if let rounds { configuration.rounds.maxRounds = rounds }
        try configuration.validate()
        try ZMQContext.requireCurve()
        let identity = try KeyDirectory(path: configuration.keyDirectory).readIdentity()
        var agents: [String: NodePublicIdentity] = [:]
        for agent in configuration.agents {
            agents[agent.id] = try KeyDirectory.readPublicIdentity(file: agent.publicKeyFile)
        }
        try AggregatorConfiguration.checkDistinctKeys(configuration.agents.compactMap { agent in
            agents[agent.id].map { (agent.id, agent.publicKeyFile, $0) }
        })
        let context = try ZMQContext()
        var shared: (store: PostgresStateStore, checkpoint: AggregatorCheckpoint?)?
        if let postgres = configuration.postgres {
            let store = try await PostgresStateStore.connect(postgres, logger: logger)
            guard let token = try await Self.lead(store, logger: logger) else {
                await store.close()
                return
            }
            do {
                let changes = try await store.recordEnrolment(agents)
                if !(changes.added + changes.removed + changes.changed).isEmpty {
                    logger.warning("The enrolment differs from the previous leader's: check both configurations", metadata: [
                        "agents.added": "\(changes.added)", "agents.removed": "\(changes.removed)",
                        "agents.key_changed": "\(changes.changed)",
                    ])
                }
                let checkpoint = try await store.load()
                logger.notice("Leading: this aggregator holds the lease", metadata: [
                    "node": "\(store.node)", "lease.token": "\(token)", "round.completed": "\(checkpoint?.round ?? 0)",
                    "model.version": "\(checkpoint?.modelVersion ?? 0)", "postgres": "\(store.location)",
                ])
                shared = (store, checkpoint)
            } catch {
                await store.close()
                throw error
            }
        }
        // A regional aggregator: the agent configuration with which it joins the global aggregator.
        var upstream: (configuration: EdgeAgentConfiguration, bridge: RegionalBridge)?
        if let path = configuration.upstream {
            upstream = (try EdgeAgentConfiguration.load(path: path), RegionalBridge())
        }
        let label = configuration.isNonPrivate ? " │ NON-PRIVATE" : ""
        let server = try AggregatorServer(configuration: configuration, identity: identity, agents: agents,
                                          context: context, logger: logger, shared: shared,
                                          regional: upstream?.bridge) { report in
                FileHandle.standardOutput.write(Data((ProgressLine.format(report) + label + "\n").utf8))
        }
        defer { server.close() }
        if configuration.isNonPrivate {
            logger.warning("""
                NON-PRIVATE: non_private is true and rounds.noise_multiplier is 0: agents that are non_private too \
                send exact updates; agents with a privacy budget refuse these rounds
                """)
        } else {
            logger.info("Privacy: agents add noise at the announced multipliers and charge their own ledgers",
                        metadata: configuration.privacySummary.mapValues { .string($0) })
        }
        logger.info("Listening for enrolled agents", metadata: [
            "endpoint": "\(server.router.boundEndpoints.joined(separator: ","))",
            "announce": "\(server.publisher.boundEndpoints.joined(separator: ","))", "agents.enrolled": "\(agents.count)",
        ])
        // The round driver ends the group after rounds.max_rounds rounds; on SIGTERM every service stops
        // (the last completed round is checkpointed; an open round is re-run on restart). The status
        // service, last to stop, writes what the driver queued before it ended.
        var services = server.services()
        services.status.inServiceGroup = true
        // The operator endpoint: /healthz, /metrics, /status, behind the bearer token.
        let http = try configuration.http.settings(directory: configuration.stateDirectory)
        let token = try http.tokenFile.map { try OperatorHTTP.token(at: $0) }
        let endpoint = OperatorHTTP.service(settings: http, token: token, registry: server.metrics.registry,
                                            announceIn: configuration.stateDirectory, logger: logger,
                                            refresh: { await server.refreshMetrics() },
                                            pages: ["dashboard": { await server.dashboard() }]) {
            await server.liveStatus()
        }
        var groupServices: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: endpoint),
            .init(service: services.status),
            .init(service: AdmissionLogService(zap: server.zap, logger: logger)),
            // An enrolled agent could make libzmq buffer a message that never ends: the backstop.
            .init(service: MemoryGuard(limitMiB: configuration.effectiveMemoryLimitMiB, channels: [("listen", server.router)],
                                       logger: logger) { server.metrics.connectionsDropped() }),
            .init(service: services.announcer),
            .init(service: services.intake),
            .init(service: services.driver, successTerminationBehavior: .gracefullyShutdownGroup),
        ]
        if let (agent, bridge) = upstream {
            let ownIdentity = try KeyDirectory(path: agent.keyDirectory).readIdentity()
            let global = try KeyDirectory.readPublicIdentity(file: agent.aggregatorPublicKeyFile)
            try FileManager.default.createDirectory(atPath: agent.dataDirectory, withIntermediateDirectories: true)
            let ledger = try PrivacyLedger(path: agent.ledgerPath, budget: agent.budget, signer: ownIdentity.signing)
            let session = try AgentSession(configuration: agent, identity: ownIdentity, aggregator: global, context: context,
                                           worker: RegionalRoundWorker(bridge: bridge, ledger: ledger, floor: agent.floor),
                                           logger: logger)
            logger.notice("Regional aggregator: rounds follow the global aggregator's, their sums go up", metadata: [
                "upstream.id": "\(agent.id)", "upstream": "\(agent.aggregatorEndpoints.joined(separator: ","))",
                "upstream.privacy": "\(agent.floor == nil ? "NON-PRIVATE" : "ε \(agent.budget.epsilon), δ \(agent.budget.delta)")",
                "ledger": "\(agent.ledgerPath)",
            ])
            groupServices.append(.init(service: AgentSessionService(session: session)))
        }
        if let store = shared?.store {
            groupServices.insert(.init(service: LeaseService(store: store, logger: logger)), at: 0)
        }
        if let (_, delivery) = server.trendOutbox {
            for sink in delivery.sinks {
                logger.info("Demand-trend warnings delivered to sink", metadata: ["sink": "\(sink.name)"])
            }
            groupServices.insert(.init(service: AlertDeliveryService(delivery: delivery, logger: logger)), at: 1)
        }
        let group = ServiceGroup(configuration: .init(
            services: groupServices,
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            await shared?.store.close()
            throw error
        }
        if let store = shared?.store {
            // A graceful stop hands over at once: the standby need not wait for the lease to run out.
            await store.release()
            await store.close()
            logger.notice("Lease released")
        }
    }

    /// Waits as a standby until this process holds the lease; returns its fencing token, or nil when SIGTERM or
    /// SIGINT came first.
    static func lead(_ store: PostgresStateStore, logger: Logger) async throws -> Int64? {
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        return try await withThrowingTaskGroup(of: Int64?.self) { group in
            group.addTask {
                try await store.acquire { holder in
                    logger.notice("Standby: another aggregator leads; waiting to take over", metadata: [
                        "leader": "\(holder.holder)", "lease.token": "\(holder.token)", "node": "\(store.node)",
                    ])
                }
            }
            group.addTask {
                for await signal in signals {
                    logger.notice("Standby stopped by signal", metadata: ["signal": "\(signal)"])
                    return nil
                }
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }
}

enum ProgressLine {
    static func format(_ report: RoundReport) -> String {
        let outcome = !report.aggregated ? "FAILED quorum (model unchanged)"
            : report.forwarded ? "sum forwarded upstream (on model v\(report.modelVersion))" : "aggregated → model v\(report.modelVersion)"
        let rejected = report.rejections.values.reduce(0, +)
        var line = "round \(report.round) │ agents \(report.liveAgents)/\(report.enrolledAgents) live │ "
            + "accepted \(report.agents.count)\(report.secureAggregation ? " (secure sum)" : "") │ rejected \(rejected) │ \(outcome)"
        if report.evaluatedUsers > 0 {
            line += String(format: " │ held-out on model v%llu (%d users): top-1 %.1f%%  top-10 %.1f%%  loss %.3f",
                           report.evaluatedModelVersion, report.evaluatedUsers, report.top1 * 100,
                           report.top10 * 100, report.heldOutLoss)
        }
        if report.demandRegions > 0 {
            line += " │ demand: " + (report.demandTrends.isEmpty ? "steady" : trends(report.demandTrends))
        }
        return line + String(format: " │ %.1f s", report.seconds)
    }

    /// "category 16838 (model #2) surge +190% (all, region-1)": one entry per category and direction, the change of the
    /// regions together when they warned, else the largest regional one.
    static func trends(_ warnings: [DemandTrendWarning]) -> String {
        let groups = Dictionary(grouping: warnings) { "\($0.category) \($0.direction.rawValue)" }
        return groups.values.compactMap { group -> (UInt64, String)? in
            guard let first = group.first else { return nil }
            let total = group.first { $0.region == DemandTrendDetector.allRegions }
            let change = total?.change ?? group.map(\.change).max { abs($0) < abs($1) } ?? first.change
            let regions = group.map(\.region).sorted { ($0 == DemandTrendDetector.allRegions ? "" : $0) < ($1 == DemandTrendDetector.allRegions ? "" : $1) }
            return (first.category, "\(first.categoryName) \(first.direction.rawValue) "
                        + String(format: "%+.0f%%", change * 100) + " (\(regions.joined(separator: ", ")))")
        }.sorted { $0.0 < $1.0 }.map(\.1).joined(separator: "; ")
    }
}
