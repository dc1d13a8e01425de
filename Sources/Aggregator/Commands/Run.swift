import ArgumentParser
import FedCore
import Logging
import ServiceLifecycle
import UnixSignals

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the aggregator: CURVE server with the enrolled-agent allow-list.",
        discussion: "Stops cleanly on SIGTERM or SIGINT."
    )

    @Option(name: .long, help: "The aggregator's YAML configuration (see configs/aggregator.yaml).")
    var config: String

    @Option(name: .long, help: "Override the agent-facing endpoint from the configuration.")
    var listen: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        let logger = Logger.bootstrapForTool(label: "aggregator", level: logLevel)
        var configuration = try AggregatorConfiguration.load(path: config)
        if let listen { configuration.listen = listen }
        try configuration.validate()
        try ZMQContext.requireCurve()
        let identity = try KeyDirectory(path: configuration.keyDirectory).readIdentity()
        var agents: [String: NodePublicIdentity] = [:]
        for agent in configuration.agents {
            agents[agent.id] = try KeyDirectory.readPublicIdentity(file: agent.publicKeyFile)
        }
        let context = try ZMQContext()
        // The ZAP handler must be bound before the CURVE server, or libzmq admits any client.
        let zap = try ZAPAuthenticator(context: context,
                                       allowList: Dictionary(uniqueKeysWithValues: agents.map { ($0.value.box, $0.key) }))
        defer { zap.close() }
        var options = ZMQSocketOptions()
        options.curve = .server(keys: identity.box)
        options.maxMessageBytes = Int64(configuration.maxMessageBytes)
        options.routerMandatory = true
        options.heartbeat = .init(intervalMilliseconds: 1_000, timeoutMilliseconds: 5_000, ttlMilliseconds: 10_000)
        let router = try ZMQChannel(context: context, configuration: .init(
            kind: .router, options: options, bind: [configuration.listen]))
        defer { router.close() }
        logger.info("Listening for enrolled agents", metadata: [
            "endpoint": "\(router.boundEndpoints.joined(separator: ","))", "agents.enrolled": "\(agents.count)",
        ])
        let gate = AggregatorGate(aggregatorID: configuration.id, identity: identity, agents: agents)
        let services: [any Service] = [
            AgentIntakeService(router: router, gate: gate, logger: logger),
            AdmissionLogService(zap: zap, logger: logger),
        ]
        try await ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
    }
}
