/// The aggregator's door: turns a raw ROUTER message into a verified, opened request and builds the
/// sealed reply. Plain values in and out (no sockets), so every refusal path is testable.
package struct AggregatorGate: Sendable {
    package enum Outcome: Sendable {
        /// A verified hello; send `reply` (ROUTER frames, routing id first).
        case welcomed(agentID: String, hello: Hello, reply: [OutboundFrame])
        /// Refused; `reason` is a short metric label, `detail` says why in words.
        case rejected(reason: String, detail: String)
    }

    package let aggregatorID: String
    private let identity: NodeIdentity
    private let opener: EnvelopeOpener
    private let agents: [String: NodePublicIdentity]

    package init(aggregatorID: String, identity: NodeIdentity, agents: [String: NodePublicIdentity]) {
        self.aggregatorID = aggregatorID
        self.identity = identity
        self.agents = agents
        self.opener = EnvelopeOpener(recipient: identity.box, senders: agents.mapValues(\.signing))
    }

    /// Handles one message from the agent-facing ROUTER: `[routing id, header, sealed envelope]`.
    package func handle(_ message: ZMQMessage, currentRound: UInt64) -> Outcome {
        guard message.parts.count == 3 else {
            return .rejected(reason: "malformed", detail: "expected 3 frames, got \(message.parts.count)")
        }
        guard let agentID = message.userID, let agent = agents[agentID] else {
            return .rejected(reason: "unauthenticated", detail: "message without an enrolled CURVE identity")
        }
        let header: WireHeader
        do {
            header = try WireHeader(decoding: message.parts[1].bytes)
        } catch {
            return .rejected(reason: "malformed", detail: "\(error)")
        }
        switch header.kind {
        case .hello:
            do {
                let opened = try message.parts[2].withUnsafeBytes { (sealed) throws(EnvelopeError) in
                    try opener.open(sealed, expecting: .init(senderID: agentID, kind: MessageKind.hello.rawValue))
                }
                let hello = try Hello(decoding: opened.payload)
                guard hello.agentID == agentID else {
                    return .rejected(reason: "wrong_sender", detail: "hello names '\(hello.agentID)'")
                }
                let welcome = Welcome(aggregatorID: aggregatorID, currentRound: currentRound,
                                      enrolledAgents: UInt32(agents.count))
                let sealer = EnvelopeSealer(identity: identity, senderID: aggregatorID, recipient: agent.box)
                let sealed = try sealer.seal(welcome.encoded(), kind: MessageKind.welcome.rawValue, round: currentRound)
                return .welcomed(agentID: agentID, hello: hello, reply: [
                    .block(message.parts[0]), .bytes(WireHeader(kind: .welcome).bytes), .block(sealed),
                ])
            } catch let error as EnvelopeError {
                return .rejected(reason: error.reason, detail: error.description)
            } catch {
                return .rejected(reason: "malformed", detail: "\(error)")
            }
        default:
            return .rejected(reason: "unexpected_kind", detail: "\(header.kind) is not accepted from agents yet")
        }
    }
}
