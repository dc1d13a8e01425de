import FedIO
import FedNode
import Foundation
import Logging
import ServiceLifecycle

/// The agent's own sockets — ingest, alert publishing, recommendation queries — and who may use them.
///
/// A socket with enrolled clients (`clients:`) runs CURVE with the agent's identity as the server key,
/// and the ZAP handler admits only the keys enrolled for that socket's domain: a producer's key does
/// not open the recommendation socket. A socket without clients is plain, which the configuration
/// allowed only on a loopback address with `insecure_loopback: true`; it is logged as INSECURE. As a
/// service, it logs refused handshakes (at most one line a second, with the number left out).
final class AgentDoors: Service, Sendable {
    private let zap: ZAPAuthenticator?
    private let secured: [String: ZMQSocketOptions]
    private let plain: ZMQSocketOptions
    private let logger: Logger

    init(configuration: EdgeAgentConfiguration, identity: NodeIdentity, context: ZMQContext, logger: Logger) throws {
        self.logger = logger
        var lists: [String: [BoxPublicKey: String]] = [:]
        var secured: [String: ZMQSocketOptions] = [:]
        var base = ZMQSocketOptions()
        base.maxMessageBytes = Int64(configuration.maxMessageBytes)  // a peer that sends more is disconnected
        for door in configuration.doors {
            guard door.secure else {
                logger.warning("INSECURE: \(door.key) serves plain, without keys (insecure_loopback: true): any process on this machine may use it", metadata: [
                    "endpoint": "\(door.endpoint)",
                ])
                continue
            }
            var list: [BoxPublicKey: String] = [:]
            for client in door.clients {
                let key: BoxPublicKey
                do {
                    key = try KeyDirectory.readPublicIdentity(file: client.publicKeyFile).box
                } catch {
                    throw ConfigError.invalidValue(key: door.clientsKey, value: client.publicKeyFile,
                                                   reason: "cannot read client '\(client.id)''s public key: \(error)")
                }
                if let other = list[key] {
                    throw ConfigError.invalidValue(key: door.clientsKey, value: client.publicKeyFile,
                                                   reason: "'\(client.id)' has the same key as '\(other)'")
                }
                list[key] = client.id
            }
            lists[door.domain] = list
            var options = base
            options.curve = .server(keys: identity.box)
            options.zapDomain = door.domain
            secured[door.key] = options
            logger.info("\(door.key): CURVE, only enrolled clients", metadata: [
                "endpoint": "\(door.endpoint)", "clients": "\(door.clients.map(\.id).joined(separator: ","))",
            ])
        }
        self.secured = secured
        plain = base
        // The handler must run before any CURVE socket binds, or libzmq would admit every client.
        zap = lists.isEmpty ? nil : try ZAPAuthenticator(context: context, domains: lists)
    }

    /// The socket options of the door configured under `key` (`ingest`, `alerts.publish`, `alerts.recommend`).
    func options(_ key: String) -> ZMQSocketOptions { secured[key] ?? plain }

    func close() { zap?.close() }

    func run() async throws {
        guard let zap else { return await gracefulShutdownWait() }
        try? await cancelWhenGracefulShutdown {
            var throttle = LogThrottle(every: .seconds(1))
            for await decision in zap.decisions where !decision.admitted {
                guard let suppressed = throttle.due() else { continue }
                self.logger.warning("Refused a client without an enrolled key", metadata: [
                    "socket": "\(decision.domain)", "address": "\(decision.address)",
                    "key": "\(decision.clientKey.map { _ in "unenrolled" } ?? "none (no CURVE)")",
                    "refused.since_last_line": "\(suppressed)",
                ])
            }
        }
    }
}

private func gracefulShutdownWait() async {
    try? await gracefulShutdown()
}
