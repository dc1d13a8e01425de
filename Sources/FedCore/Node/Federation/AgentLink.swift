package import FedIO
import FedLogic
import FedModel
import Foundation

/// Why an agent could not register with its aggregator.
package enum AgentLinkError: Error, CustomStringConvertible, Sendable {
    /// The aggregator's ZAP handler refused this agent's CURVE key.
    case notEnrolled(agentID: String, publicKeyFile: String)
    /// Nothing came back in time: the aggregator is down, unreachable, or has another server key.
    case noAnswer(endpoint: String, seconds: Double)
    /// The reply could not be opened or decoded.
    case invalidReply(String)
    case transport(ZMQError)

    package var description: String {
        switch self {
        case let .notEnrolled(id, file):
            "the aggregator refused agent '\(id)': its key is not enrolled. Ask the aggregator operator to add "
                + "id '\(id)' with public_key_file \(file) to the aggregator configuration"
        case let .noAnswer(endpoint, seconds):
            "no answer from the aggregator at \(endpoint) within \(Int(seconds)) s: check that it runs, that the "
                + "endpoint is right, and that aggregator_public_key_file is the aggregator's current identity.public"
        case let .invalidReply(why): "the aggregator's reply was refused: \(why)"
        case let .transport(error): "transport: \(error)"
        }
    }
}

/// An agent's CURVE-secured DEALER link to its aggregator, with registration.
package final class AgentLink: Sendable {
    package let agentID: String
    package let endpoint: String
    private let channel: ZMQChannel
    private let sealer: EnvelopeSealer
    private let opener: EnvelopeOpener
    private let publicKeyFile: String

    /// Connects (in the background; libzmq retries with back-off) to `configuration.aggregator`.
    package init(context: ZMQContext, configuration: EdgeAgentConfiguration, identity: NodeIdentity,
                 aggregator: NodePublicIdentity, aggregatorID: String = "aggregator") throws(ZMQError) {
        channel = try ZMQChannel(context: context, configuration: .init(
            kind: .dealer, options: Self.options(configuration: configuration, identity: identity, aggregator: aggregator),
            connect: configuration.aggregatorEndpoints))
        agentID = configuration.id
        endpoint = configuration.aggregatorEndpoints.joined(separator: ", ")
        publicKeyFile = KeyDirectory(path: configuration.keyDirectory).publicFilePath
        sealer = EnvelopeSealer(identity: identity, senderID: configuration.id, recipient: aggregator.box)
        opener = EnvelopeOpener(recipient: identity.box, senders: [aggregatorID: aggregator.signing])
    }

    deinit { channel.close() }

    /// CURVE client towards the aggregator's key, reconnecting with exponential back-off from 100 ms
    /// to 5 s, ZMTP heartbeats so a dead peer is noticed within 5 s.
    ///
    /// With the endpoints of a highly available pair, the socket connects to each. Only the leader binds, and
    /// `ZMQ_IMMEDIATE` queues messages only on connections whose handshake completed, so everything goes to
    /// the leader; the back-off stops at 1 s, so that a new leader is found within a second of binding.
    package static func options(configuration: EdgeAgentConfiguration, identity: NodeIdentity,
                                aggregator: NodePublicIdentity) -> ZMQSocketOptions {
        var options = ZMQSocketOptions()
        options.curve = .client(keys: identity.box, serverKey: aggregator.box)
        options.maxMessageBytes = Int64(configuration.maxMessageBytes)
        options.reconnectIntervalMilliseconds = 100
        let pair = configuration.aggregatorEndpoints.count > 1
        options.reconnectIntervalMaxMilliseconds = pair ? 1_000 : 5_000
        options.immediate = pair
        options.heartbeat = .init(intervalMilliseconds: 1_000, timeoutMilliseconds: 5_000, ttlMilliseconds: 10_000)
        return options
    }

    /// Messages from the aggregator, as received (open them with ``open(_:)``).
    package var messages: ZMQChannel.Inbox { channel.messages }
    /// The link's connection events (handshakes, disconnects, refusals).
    package var events: ZMQChannel.Events { channel.events }

    /// Seals `message` to the aggregator (bound to `round`) and sends it.
    package func send<M: WireMessage>(_ message: M, round: UInt64 = 0) async throws {
        let sealed = try sealer.seal(message.encoded(), kind: M.kind.rawValue, round: round)
        try await channel.send([.bytes(WireHeader(kind: M.kind).bytes), .block(sealed)])
    }

    /// Opens a sealed message from the aggregator: `[header, envelope]`.
    package func open(_ message: ZMQMessage) throws -> (kind: MessageKind, payload: [UInt8]) {
        let frames = message.frames
        guard frames.count == 2 else { throw AgentLinkError.invalidReply("expected 2 frames, got \(frames.count)") }
        let header = try WireHeader(decoding: frames[0])
        let opened = try opener.open(frames[1], expecting: .init(kind: header.kind.rawValue))
        return (header.kind, opened.payload)
    }

    /// Sends a sealed hello and waits for the aggregator's sealed welcome.
    ///
    /// - Throws: ``AgentLinkError/notEnrolled(agentID:publicKeyFile:)`` as soon as the CURVE handshake
    ///   is refused, ``AgentLinkError/noAnswer(endpoint:seconds:)`` after `timeout`.
    package func register(timeout: Duration = .seconds(10)) async throws(AgentLinkError) -> Welcome {
        let hello = Hello(agentID: agentID, softwareVersion: FedDrift.version,
                          sentAtMilliseconds: Int64(Date().timeIntervalSince1970 * 1000))
        // Watch for a refused handshake while sending: after a refusal the DEALER has no peer, so
        // the send itself would wait for a connection that never comes.
        let outcome: Result<Welcome, AgentLinkError>? = await withTaskGroup(of: Result<Welcome, AgentLinkError>?.self) {
            group in
            group.addTask { [channel, agentID, publicKeyFile] in
                for await event in channel.events where event.kind == .handshakeFailedAuthentication {
                    return .failure(.notEnrolled(agentID: agentID, publicKeyFile: publicKeyFile))
                }
                return nil
            }
            group.addTask { [self] in
                do {
                    try await send(hello)
                    guard let message = try await channel.receive(timeout: timeout) else { return nil }
                    let (kind, payload) = try open(message)
                    guard kind == .welcome else { return .failure(.invalidReply("unexpected \(kind)")) }
                    return .success(try Welcome(decoding: payload))
                } catch let error as ZMQError {
                    return Task.isCancelled ? nil : .failure(.transport(error))
                } catch {
                    return .failure(.invalidReply("\(error)"))
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            // The first answer wins; a nil (timeout, cancellation) ends the wait.
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        if let outcome { return try outcome.get() }
        throw .noAnswer(endpoint: endpoint, seconds: Double(timeout.components.seconds))
    }

    package func close() { channel.close() }
}
