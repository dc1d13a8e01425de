package import FedIO
import FedLogic
import FedModel

/// The aggregator's door: turns a raw ROUTER message into a verified, opened request, and seals replies.
/// Plain values in and out (no sockets), so every refusal path is testable.
///
/// Every agent message is `[routing id, header, sealed envelope]`. The gate checks, in order: frame
/// count, the CURVE-authenticated agent id (stamped by the ZAP handler), the header, the envelope
/// (recipient, enrolled sender = authenticated agent, kind = header kind, round binding for updates,
/// signature, every chunk's tag, replay), then decodes the body and checks that a body naming a round
/// names the envelope's round.
package struct AggregatorGate: Sendable {
    /// What an agent asked for, opened and decoded.
    package enum Body: Sendable {
        case hello(Hello)
        case update(UpdateSubmission)
        case modelRequest(ModelRequest)
        case evaluation(EvaluationReport)
        case heartbeat(Heartbeat)
        case histogram(DriftHistogramReport)
        case demand(DemandCountsReport)
        case receipt(LedgerReceiptMessage)
        /// A secure-aggregation step (``SecureRoundDesk``).
        case secure(SecureRoundDesk.Body)
    }

    package struct Request: Sendable {
        package var agentID: String
        /// The ROUTER routing id of the connection it came on (replies go there).
        package var routingID: ByteBlock
        package var body: Body
        /// Sealed bytes received (for logs and metrics).
        package var sealedBytes: Int
    }

    /// A refused message; `reason` is a short metric label, `detail` says why in words. `agentID` and
    /// `routingID` are known when the transport authenticated the sender, so it can be told.
    package struct Rejection: Error, Sendable {
        package var reason: String
        package var detail: String
        package var agentID: String?
        package var routingID: ByteBlock?
        package var kind: MessageKind?
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

    package var enrolledAgents: [String] { agents.keys.sorted() }

    /// An enrolled agent's signing key (its privacy-ledger entries are signed with it).
    package func signingKey(of agentID: String) -> SigningPublicKey? { agents[agentID]?.signing }

    /// Opens one message from the agent-facing ROUTER. `openRound` is the round updates must be sealed for.
    package func open(_ message: ZMQMessage, openRound: UInt64?) -> Result<Request, Rejection> {
        let routingID = message.parts.first
        guard let agentID = message.userID, agents[agentID] != nil else {
            return .failure(Rejection(reason: "unauthenticated", detail: "message without an enrolled CURVE identity",
                                      agentID: nil, routingID: routingID, kind: nil))
        }
        func reject(_ reason: String, _ detail: String, kind: MessageKind? = nil) -> Result<Request, Rejection> {
            .failure(Rejection(reason: reason, detail: detail, agentID: agentID, routingID: routingID, kind: kind))
        }
        guard message.parts.count == 3, let routingID else {
            return reject("malformed", "expected 3 frames, got \(message.parts.count)")
        }
        let header: WireHeader
        do {
            header = try WireHeader(decoding: message.parts[1].bytes)
        } catch {
            return reject("malformed", "\(error)")
        }
        let kind = header.kind
        let round: UInt64? = kind == .update ? (openRound ?? 0) : nil
        do {
            let expectation = EnvelopeExpectation(senderID: agentID, kind: kind.rawValue, round: round)
            if kind == .update {
                // Decrypted straight into the float storage the round averages from.
                let opened = try message.parts[2].withUnsafeBytes { (sealed) throws(EnvelopeError) in
                    try opener.openFloats(sealed, expecting: expectation)
                }
                let update = try UpdateSubmission(opened: opened)
                guard update.round == opened.header.round else {
                    return reject("wrong_round", "body names round \(update.round), envelope \(opened.header.round)",
                                  kind: kind)
                }
                return .success(Request(agentID: agentID, routingID: routingID, body: .update(update),
                                        sealedBytes: message.parts[2].count))
            }
            let opened = try message.parts[2].withUnsafeBytes { (sealed) throws(EnvelopeError) in
                try opener.open(sealed, expecting: expectation)
            }
            let body: Body
            switch kind {
            case .hello:
                let hello = try Hello(decoding: opened.payload)
                guard hello.agentID == agentID else { return reject("wrong_sender", "hello names '\(hello.agentID)'", kind: kind) }
                body = .hello(hello)
            case .modelRequest: body = .modelRequest(try ModelRequest(decoding: opened.payload))
            case .metrics: body = .evaluation(try EvaluationReport(decoding: opened.payload))
            case .heartbeat: body = .heartbeat(try Heartbeat(decoding: opened.payload))
            case .driftHistogram: body = .histogram(try DriftHistogramReport(decoding: opened.payload))
            case .demandCounts: body = .demand(try DemandCountsReport(decoding: opened.payload))
            case .ledgerReceipt: body = .receipt(try LedgerReceiptMessage(decoding: opened.payload))
            case .secureKeys:
                guard let identity = agents[agentID]?.signing else { return reject("unauthenticated", "no signing key") }
                body = .secure(.keys(try SecureKeysMessage(decoding: opened.payload), identity: identity))
            case .secureShares: body = .secure(.shares(try SecureSharesMessage(decoding: opened.payload)))
            case .secureMaskedInput: body = .secure(.maskedInput(try SecureMaskedInputMessage(decoding: opened.payload)))
            case .secureSignature: body = .secure(.signature(try SecureSignatureMessage(decoding: opened.payload)))
            case .secureUnmaskResponse: body = .secure(.unmask(try SecureUnmaskResponseMessage(decoding: opened.payload)))
            default:
                return reject("unexpected_kind", "\(kind) is not accepted from agents", kind: kind)
            }
            return .success(Request(agentID: agentID, routingID: routingID, body: body,
                                    sealedBytes: message.parts[2].count))
        } catch let error as EnvelopeError {
            if case .wrongRound = error, openRound == nil {
                return reject("no_round_open", "update arrived while no round is open", kind: kind)
            }
            return reject(error.reason, error.description, kind: kind)
        } catch {
            // Opened and authentic, but the body does not decode (e.g. declared vs actual size).
            return reject("malformed", "\(error)", kind: kind)
        }
    }

    /// Seals `message` to `agentID` and returns the ROUTER frames addressed to `routingID`.
    package func reply<M: WireMessage>(_ message: M, to agentID: String, routingID: ByteBlock,
                                       round: UInt64 = 0) throws(CryptoError) -> [OutboundFrame] {
        guard let agent = agents[agentID] else { throw .unknownRecipient(agentID) }
        let sealer = EnvelopeSealer(identity: identity, senderID: aggregatorID, recipient: agent.box)
        let sealed = try sealer.seal(message.encoded(), kind: M.kind.rawValue, round: round)
        return [.block(routingID), .bytes(WireHeader(kind: M.kind).bytes), .block(sealed)]
    }
}
