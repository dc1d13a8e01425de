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
        abstract: "Run the agent: take part in federated rounds and ingest live events.",
        discussion: """
            Connects to the aggregator over CURVE, registers with a sealed hello and follows its round \
            announcements. For each round it evaluates the global model on every evaluated user's most \
            recent event (held out from training), Poisson-samples users, trains their clipped updates from \
            the global model on their recent events in data_directory/events.sqlite, and sends the sum sealed \
            to the aggregator. Raw events never leave this node. Reconnects by itself with back-off. With \
            `ingest` configured, live events arriving on that PULL socket are stored as they come. Stops \
            cleanly on SIGTERM or SIGINT.
            """
    )

    @Option(name: .long, help: "The agent's YAML configuration (see configs/agent-1.yaml).")
    var config: String

    @Option(name: .long, help: "Override the aggregator endpoint from the configuration.")
    var aggregator: String?

    @Flag(name: .long, help: "Register, print the welcome and exit (checks keys and enrolment).")
    var once = false

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(name: .long, help: "Log lines: text (for people) or json (one object per line, for log shippers).")
    var logFormat: LogFormat = .text

    func run() async throws {
        let logger = Logger.bootstrapForTool(label: "edge-agent", level: logLevel, format: logFormat)
        if let armed = try Failpoint.checkEnvironment() { logger.warning("\(armed)") }
        var configuration = try EdgeAgentConfiguration.load(path: config)
        if let aggregator { configuration.aggregator = aggregator }
        try configuration.validate()
        try ZMQContext.requireCurve()
        let identity = try KeyDirectory(path: configuration.keyDirectory).readIdentity()
        let aggregatorIdentity = try KeyDirectory.readPublicIdentity(file: configuration.aggregatorPublicKeyFile)
        let context = try ZMQContext()
        if once {
            let link = try AgentLink(context: context, configuration: configuration, identity: identity,
                                     aggregator: aggregatorIdentity)
            defer { link.close() }
            let group = ServiceGroup(configuration: .init(
                services: [.init(service: RegistrationService(link: link, logger: logger),
                                 successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
            return
        }
        guard let catalogPath = configuration.catalog else {
            throw ValidationError("""
                \(config) has no 'catalog': training needs the federation's shared category catalog. Get it \
                from the aggregator operator (aggregator catalog build) and set catalog: <path>.
                """)
        }
        let catalog = try CategoryCatalog.read(from: catalogPath)
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        let store = try EventStore(path: configuration.storePath)
        let events = try store.eventCount(), users = try store.userCount()
        logger.info("Local store opened", metadata: [
            "store": "\(configuration.storePath)", "events": "\(events)", "users": "\(users)",
            "catalog.categories": "\(catalog.categories)",
        ])
        if events == 0 {
            logger.warning("The store is empty: import events (edge-agent import) or configure 'ingest'")
        }
        let ledger = try PrivacyLedger(path: configuration.ledgerPath, budget: configuration.budget,
                                       signer: identity.signing)
        if let floor = configuration.floor {
            let spent = try ledger.spentEpsilon()
            logger.info("Privacy budget", metadata: [
                "epsilon.budget": "\(configuration.budget.epsilon)", "delta": "\(configuration.budget.delta)",
                "epsilon.spent": "\(spent)", "ledger": "\(configuration.ledgerPath)",
                "floor.min_noise_multiplier": "\(floor.minNoiseMultiplier)",
                "floor.max_sampling_rate": "\(floor.maxSamplingRate)",
            ])
        } else {
            logger.warning("""
                NON-PRIVATE: non_private is true: this agent releases what the aggregator asks for, without a \
                budget or a noise floor, and its held-out evaluations exactly (each release is recorded in the ledger \
                at ε = ∞)
                """, metadata: ["ledger": "\(configuration.ledgerPath)"])
        }
        var driftSettings = DriftEngine.Settings(region: configuration.id)
        driftSettings.coldStartThreshold = configuration.alerts.coldStartThreshold
        driftSettings.recommendations = configuration.alerts.recommendations
        driftSettings.detector = configuration.alerts.detector
        driftSettings.churn = configuration.alerts.churn
        driftSettings.coldStartChurnThreshold = configuration.alerts.coldStartChurnThreshold
        // Scoring runs on its own thread; it replays each user's recent history when the first model arrives.
        let metrics = AgentMetrics()
        let scoring = LiveScoring(catalog: catalog, settings: driftSettings, store: store, logger: logger,
                                  thresholdsFile: configuration.thresholdsPath,
                                  latency: { metrics.scored(nanoseconds: $0) })
        defer { scoring.stop() }
        var worker = StoreRoundWorker(store: store, catalog: catalog, evaluationUsers: configuration.evaluationUsers,
                                      threads: configuration.threads, ledger: ledger, floor: configuration.floor,
                                      evaluationNoiseMultiplier: configuration.privacy?.evaluationNoiseMultiplier ?? 0,
                                      alerting: .init(detector: driftSettings.detector, rule: driftSettings.rule,
                                                      calibration: AlertRateCalibration.Settings(budgetPer10k: 50),
                                                      churn: driftSettings.churn,
                                                      churnCheckSeconds: driftSettings.churnCheckSeconds,
                                                      thresholds: { scoring.thresholds }))
        worker.releaseAtCutoff = configuration.floor != nil && configuration.privacy?.releaseWhenReady == false
        if configuration.trends.release {
            // Demand counts from what arrives after this start (the history was imported, not bought today).
            worker.demand = .init(noiseMultiplier: configuration.trends.noiseMultiplier, after: try store.lastEventID())
            logger.info("Demand counts released each round for the aggregator's trend warnings", metadata: [
                "noise_multiplier": "\(configuration.floor == nil ? "none (NON-PRIVATE)" : "\(configuration.trends.noiseMultiplier)")",
            ])
        }
        // No door without a key: each of the agent's sockets admits only its enrolled clients (CURVE, the
        // agent's identity as server key, one ZAP domain per socket), or serves plain on loopback when the
        // operator said so (insecure_loopback: true; validated at load).
        let doors = try AgentDoors(configuration: configuration, identity: identity, context: context, logger: logger)
        defer { doors.close() }
        let alertChannel = try configuration.alerts.publish.map { endpoint in
            try ZMQChannel(context: context, configuration: .init(kind: .pub, options: doors.options("alerts.publish"),
                                                                  bind: [endpoint]))
        }
        let alertStore = try AlertStore(path: configuration.alertStorePath)
        // Sinks that deliver alerts to people; their secrets are read now, so a bad file stops the start.
        let delivery = try AlertDelivery(store: alertStore, sinks: configuration.alerts.sinks)
        for sink in delivery.sinks {
            logger.info("Alerts delivered to sink", metadata: [
                "sink": "\(sink.name)", "kinds": "\(sink.configuration.kinds.map { $0.sorted() } ?? ["all"])",
                "digest": "\(sink.configuration.digest != nil)",
            ])
        }
        let publisher = AlertPublisher(store: alertStore, channel: alertChannel, file: configuration.alertFilePath,
                                       delivery: delivery)
        let pending = try await publisher.republishPending()
        if pending > 0 { logger.notice("Re-published alerts left unconfirmed by the last run", metadata: ["alerts": "\(pending)"]) }
        // Secure aggregation: the other enrolled agents' identities, when the operator pinned them.
        let peers = try configuration.secureAggregationPeers.map { files in
            Set(try files.map { try KeyDirectory.readPublicIdentity(file: $0).signing })
        }
        if let peers {
            logger.info("Secure aggregation: rosters must consist of the pinned peers", metadata: ["peers": "\(peers.count)"])
        }
        let session = try AgentSession(configuration: configuration, identity: identity, aggregator: aggregatorIdentity,
                                       context: context, worker: worker, logger: logger,
                                       onModel: { parameters, version in scoring.install(parameters, modelVersion: version) },
                                       onThresholds: { values in
                                           let churnDefault = scoring.thresholds.churnRisk
                                           if let thresholds = AlertThresholds(values: values.map(Double.init),
                                                                               churnDefault: churnDefault) {
                                               scoring.setThresholds(thresholds)
                                           }
                                       }, peers: peers)
        defer { session.close() }
        // The operator endpoint: /healthz, /metrics, /status, behind the bearer token.
        let http = try configuration.http.settings(directory: configuration.dataDirectory)
        let token = try http.tokenFile.map { try OperatorHTTP.token(at: $0) }
        let ingestCounts = IngestCounts()
        let alertReads = BlockingQueue(label: "feddrift.alerts-page")
        let operatorEndpoint = OperatorHTTP.service(settings: http, token: token, registry: metrics.registry,
                                                    announceIn: configuration.dataDirectory, logger: logger,
                                                    refresh: { [worker] in
            let status = session.snapshot, progress = scoring.progress
            metrics.refresh(scored: progress.eventsScored, users: progress.users, privacy: worker.privacyStatus(),
                            connected: status.connected, lastRound: status.status?.lastRound ?? 0,
                            modelVersion: progress.modelVersion ?? status.status?.modelVersion ?? 0)
            metrics.pendingDeliveries(delivery.counts.mapValues(\.pending))
        }, pages: ["alerts": { [configuration, worker] in
            // The newest 100 alerts, read off the cooperative pool.
            let alerts = (try? await alertReads.run { try alertStore.recent(limit: 100) }) ?? []
            let status = session.snapshot, progress = scoring.progress
            return DashboardPages.agentAlerts(agentID: configuration.id, connected: status.connected,
                                              modelVersion: progress.modelVersion, thresholds: scoring.thresholds,
                                              privacy: worker.privacyStatus(), deliveries: delivery.counts, alerts: alerts)
        }]) { [configuration, worker] in
            AgentStatusDocument.make(configuration: configuration, session: session.snapshot, scoring: scoring.progress,
                                     thresholds: scoring.thresholds, privacy: worker.privacyStatus(),
                                     ingest: ingestCounts.values, deliveries: delivery.counts)
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: AlertService(scoring: scoring, publisher: publisher, metrics: metrics, logger: logger)),
            .init(service: AgentSessionService(session: session)),
            .init(service: AlertDeliveryService(delivery: delivery, logger: logger) { sink, outcome, count in
                metrics.delivery(sink: sink, outcome: outcome.rawValue, count: count)
            }),
            .init(service: operatorEndpoint),
            .init(service: doors),
        ]
        var listening: [(name: String, channel: ZMQChannel)] = []
        if let endpoint = configuration.ingest, let format = EventFormat(rawValue: configuration.ingestFormat) {
            // Few whole messages wait, in libzmq (per producer) and in the channel: with scoring's backlog bound
            // (LiveScoring.maxBacklogEvents), a flood waits in the producers' queues, not here.
            var options = doors.options("ingest")
            options.receiveHighWaterMark = 64
            let channel = try ZMQChannel(context: context, configuration: .init(kind: .pull, options: options, bind: [endpoint],
                                                                                inboxCapacity: 16))
            logger.info("Live ingest listening", metadata: [
                "endpoint": "\(channel.boundEndpoints.joined(separator: ","))", "format": "\(format.rawValue)",
            ])
            services.append(.init(service: IngestService(channel: channel, store: store, format: format, scoring: scoring,
                                                         metrics: metrics, counts: ingestCounts, logger: logger)))
            listening.append(("ingest", channel))
        }
        if let kafka = configuration.kafka, let format = EventFormat(rawValue: kafka.format ?? configuration.ingestFormat) {
            let settings = KafkaIngest.Settings(properties: try kafka.consumerProperties(), topic: kafka.topic, format: format,
                                                batch: kafka.batch)
            logger.info("Kafka ingest", metadata: [
                "brokers": "\(kafka.brokers)", "topic": "\(kafka.topic)", "group": "\(kafka.group)", "format": "\(format.rawValue)",
            ])
            services.append(.init(service: KafkaIngestService(settings: settings, store: store, scoring: scoring, metrics: metrics,
                                                              counts: ingestCounts, logger: logger)))
        }
        if let endpoint = configuration.alerts.recommend {
            let channel = try ZMQChannel(context: context, configuration: .init(kind: .router,
                                                                                options: doors.options("alerts.recommend"),
                                                                                bind: [endpoint]))
            logger.info("Recommendations served", metadata: ["endpoint": "\(channel.boundEndpoints.joined(separator: ","))"])
            services.append(.init(service: RecommendService(channel: channel, scoring: scoring, logger: logger)))
            listening.append(("alerts.recommend", channel))
        }
        // A client holding an enrolled key could make libzmq buffer a message that never ends: the backstop.
        if !listening.isEmpty {
            services.append(.init(service: MemoryGuard(limitMiB: configuration.effectiveMemoryLimitMiB, channels: listening,
                                                       logger: logger) { metrics.connectionsDropped() }))
        }
        try await ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint],
                                                    logger: logger)).run()
    }
}

