package import FedIO
import FedLogic
import FedModel

/// Aggregator → all agents on the PUB socket: `[header, body, signature]`.
///
/// The link is CURVE-encrypted and only enrolled agents can subscribe, so nothing is in the clear; the
/// Ed25519 signature (over a domain tag, the header and the body) lets every agent check that the
/// announcement comes from its aggregator's identity and was not altered or forged by another
/// enrolled agent. Announcements carry no secrets: round numbers, hyper-parameters, thresholds.
/// Replays are harmless: agents act only on rounds newer than the last one they handled.
package struct AnnouncementSigner: Sendable {
    static let domain = Array("feddrift-announcement-v1".utf8)
    private let signing: SigningKeyPair

    package init(identity: NodeIdentity) { signing = identity.signing }

    package func frames<M: WireMessage>(_ message: M) -> [OutboundFrame] {
        let header = WireHeader(kind: M.kind).bytes
        let body = message.encoded()
        let signed = Self.domain + header + body
        let signature = signed.withUnsafeBytes { signing.sign($0) }
        return [.bytes(header), .bytes(body), .bytes(signature)]
    }
}

/// Why an announcement was ignored.
package enum AnnouncementError: Error, Equatable, CustomStringConvertible, Sendable {
    case malformed(String)
    case badSignature

    package var description: String {
        switch self {
        case let .malformed(why): "malformed announcement: \(why)"
        case .badSignature: "announcement signature does not verify under the aggregator's key"
        }
    }
}

package struct AnnouncementVerifier: Sendable {
    private let key: SigningPublicKey

    package init(aggregator: NodePublicIdentity) { key = aggregator.signing }

    /// Verifies the signature and returns the kind and body.
    package func open(_ message: ZMQMessage) throws(AnnouncementError) -> (kind: MessageKind, body: [UInt8]) {
        let frames = message.frames
        guard frames.count == 3 else { throw .malformed("expected 3 frames, got \(frames.count)") }
        let header: WireHeader
        do {
            header = try WireHeader(decoding: frames[0])
        } catch {
            throw .malformed("\(error)")
        }
        guard key.verify(signature: frames[2], of: AnnouncementSigner.domain + frames[0] + frames[1]) else {
            throw .badSignature
        }
        return (header.kind, frames[1])
    }
}
