import FedIO
import FedLogic
import FedNode
import FedTools
import Logging
import ServiceLifecycle

/// `run --once`: registers with the aggregator and returns.
struct RegistrationService: Service {
    let link: AgentLink
    let logger: Logger

    func run() async throws {
        logger.info("Connecting to aggregator", metadata: ["agent.id": "\(link.agentID)", "endpoint": "\(link.endpoint)"])
        let welcome = try await cancelWhenGracefulShutdown { try await link.register() }
        logger.info("Registered: sealed hello accepted, sealed welcome opened", metadata: [
            "agent.id": "\(link.agentID)", "aggregator.id": "\(welcome.aggregatorID)",
            "round.id": "\(welcome.currentRound)", "agents.enrolled": "\(welcome.enrolledAgents)",
        ])
    }
}
