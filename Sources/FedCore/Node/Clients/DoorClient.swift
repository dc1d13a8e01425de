package import FedIO

/// A client of an agent's own sockets (ingest, alerts, recommendations): it connects with CURVE when
/// given its keys and the agent's public key, plain otherwise (an agent serves plain only on loopback,
/// with `insecure_loopback: true`), and waits for the connection's handshake, so that a refused key is
/// an error now — not rows silently queued for a peer that will never take them.
package enum DoorClient {
    package enum Failure: Error, Sendable, CustomStringConvertible {
        case refused(endpoint: String, keyed: Bool)
        case mechanismMismatch(endpoint: String, keyed: Bool)
        case noAnswer(endpoint: String, seconds: Int)

        package var description: String {
            switch self {
            case let .refused(endpoint, _):
                "\(endpoint) refused this client's key: the agent's operator must enrol its identity.public under the socket's clients list"
            case let .mechanismMismatch(endpoint, keyed):
                keyed
                    ? "\(endpoint) serves plain (insecure_loopback) but this client brought keys: connect without --key"
                    : "\(endpoint) admits only enrolled clients: pass --key (a key directory from edge-agent keygen, enrolled by the agent) and the agent's public key"
            case let .noAnswer(endpoint, seconds):
                "nothing answered at \(endpoint) within \(seconds) s: is the agent running, and is this its endpoint?"
            }
        }
    }

    /// Connects a `kind` socket (push, dealer, sub) to `endpoint` and returns once the handshake succeeded.
    package static func connect(_ kind: ZMQSocket.Kind, to endpoint: String, keys: NodeIdentity?,
                                serverKey: BoxPublicKey?, context: ZMQContext, subscriptions: [[UInt8]] = [],
                                timeout: Duration = .seconds(5)) async throws -> ZMQChannel {
        var options = ZMQSocketOptions()
        if let keys, let serverKey { options.curve = .client(keys: keys.box, serverKey: serverKey) }
        let keyed = options.curve != nil
        // A refused client is not retried forever by libzmq's reconnect: it gives up after the failure.
        let channel = try ZMQChannel(context: context, configuration: .init(kind: kind, options: options,
                                                                           connect: [endpoint], subscriptions: subscriptions))
        let outcome = await withTaskGroup(of: Result<Void, Failure>?.self) { group in
            group.addTask {
                for await event in channel.events {
                    switch event.kind {
                    case .handshakeSucceeded: return .success(())
                    case .handshakeFailedAuthentication: return .failure(.refused(endpoint: endpoint, keyed: keyed))
                    case .handshakeFailedProtocol, .handshakeFailedNoDetail:
                        return .failure(.mechanismMismatch(endpoint: endpoint, keyed: keyed))
                    default: continue
                    }
                }
                return nil
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return .failure(.noAnswer(endpoint: endpoint, seconds: Int(timeout.components.seconds)))
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? .failure(.noAnswer(endpoint: endpoint, seconds: Int(timeout.components.seconds)))
        }
        do {
            try outcome.get()
        } catch {
            channel.close()
            throw error
        }
        return channel
    }
}
