import FedCore
import Logging
import ServiceLifecycle

/// Reads the agent-facing ROUTER, lets the gate verify and open each message, sends the replies.
struct AgentIntakeService: Service {
    let router: ZMQChannel
    let gate: AggregatorGate
    let logger: Logger

    func run() async throws {
        for try await message in router.messages.cancelOnGracefulShutdown() {
            switch gate.handle(message, currentRound: 0) {
            case let .welcomed(agentID, hello, reply):
                logger.info("Opened sealed hello, signature verified", metadata: [
                    "agent.id": "\(agentID)", "agent.version": "\(hello.softwareVersion)",
                    "message.bytes": "\(message.frames.last?.count ?? 0)",
                ])
                do {
                    try await router.send(reply)
                } catch {
                    logger.warning("Could not send welcome", metadata: ["agent.id": "\(agentID)", "error": "\(error)"])
                }
            case let .rejected(reason, detail):
                logger.warning("Rejected message", metadata: [
                    "reason": "\(reason)", "detail": "\(detail)", "agent.id": "\(message.userID ?? "-")",
                ])
            }
        }
    }
}
