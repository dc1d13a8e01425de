import FedCore
import Logging
import ServiceLifecycle

/// Registers with the aggregator, then keeps the link up until shutdown.
struct RegistrationService: Service {
    let link: AgentLink
    let once: Bool
    let logger: Logger

    func run() async throws {
        logger.info("Connecting to aggregator", metadata: ["agent.id": "\(link.agentID)", "endpoint": "\(link.endpoint)"])
        let welcome = try await cancelWhenGracefulShutdown { try await link.register() }
        logger.info("Registered: sealed hello accepted, sealed welcome opened", metadata: [
            "agent.id": "\(link.agentID)", "aggregator.id": "\(welcome.aggregatorID)",
            "round.id": "\(welcome.currentRound)", "agents.enrolled": "\(welcome.enrolledAgents)",
        ])
        if once { return }
        try await gracefulShutdown()
    }
}
