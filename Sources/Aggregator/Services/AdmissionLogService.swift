import FedIO
import FedLogic
import FedNode
import FedTools
import Logging
import ServiceLifecycle

/// Logs every CURVE handshake the allow-list decided.
struct AdmissionLogService: Service {
    let zap: ZAPAuthenticator
    let logger: Logger

    func run() async throws {
        for await decision in zap.decisions.cancelOnGracefulShutdown() {
            let key = decision.clientKey?.fingerprint ?? "none"
            if let id = decision.userID {
                logger.info("Admitted enrolled agent", metadata: ["agent.id": "\(id)", "key": "\(key)"])
            } else {
                logger.warning("Refused connection: key not enrolled", metadata: [
                    "key": "\(key)", "peer.address": "\(decision.address)",
                ])
            }
        }
    }
}
