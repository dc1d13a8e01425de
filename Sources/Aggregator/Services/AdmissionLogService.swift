import FedIO
import FedLogic
import FedNode
import FedTools
import Logging
import ServiceLifecycle

/// Logs every CURVE handshake the allow-list decided. An agent connects both of the aggregator's
/// sockets (ROUTER and PUB) at once: its admission is one line, the second handshake within
/// ``sameConnection`` is logged at debug level only.
struct AdmissionLogService: Service {
    let zap: ZAPAuthenticator
    let logger: Logger
    static let sameConnection: Duration = .seconds(10)

    func run() async throws {
        var admitted: [String: ContinuousClock.Instant] = [:]
        for await decision in zap.decisions.cancelOnGracefulShutdown() {
            let key = decision.clientKey?.fingerprint ?? "none"
            if let id = decision.userID {
                let now = ContinuousClock.now
                let repeated = admitted[id].map { now - $0 < Self.sameConnection } ?? false
                admitted[id] = now
                logger.log(level: repeated ? .debug : .info, "Admitted enrolled agent",
                           metadata: ["agent.id": "\(id)", "key": "\(key)"])
            } else {
                logger.warning("Refused connection: key not enrolled", metadata: [
                    "key": "\(key)", "peer.address": "\(decision.address)",
                ])
            }
        }
    }
}

