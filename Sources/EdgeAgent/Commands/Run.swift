import ArgumentParser
import FedCore
import Logging
import ServiceLifecycle
import UnixSignals

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the agent: connect to the aggregator over CURVE and register with a sealed hello.",
        discussion: "Stops cleanly on SIGTERM or SIGINT."
    )

    @Option(name: .long, help: "The agent's YAML configuration (see configs/agent-1.yaml).")
    var config: String

    @Option(name: .long, help: "Override the aggregator endpoint from the configuration.")
    var aggregator: String?

    @Flag(name: .long, help: "Exit after registering (used by the demo and by scripts checking enrolment).")
    var once = false

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        let logger = Logger.bootstrapForTool(label: "edge-agent", level: logLevel)
        var configuration = try EdgeAgentConfiguration.load(path: config)
        if let aggregator { configuration.aggregator = aggregator }
        try configuration.validate()
        try ZMQContext.requireCurve()
        let identity = try KeyDirectory(path: configuration.keyDirectory).readIdentity()
        let aggregatorIdentity = try KeyDirectory.readPublicIdentity(file: configuration.aggregatorPublicKeyFile)
        let context = try ZMQContext()
        let link = try AgentLink(context: context, configuration: configuration, identity: identity,
                                 aggregator: aggregatorIdentity)
        defer { link.close() }
        let service = RegistrationService(link: link, once: once, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
