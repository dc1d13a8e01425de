/// Why an envelope was refused. Each case is distinct so rejections can be counted by reason.
package enum EnvelopeError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The bytes are not an envelope (bad magic, truncated, inconsistent sizes).
    case malformed(String)
    case unsupportedVersion(UInt8)
    /// Sealed to another recipient key than ours: the sender has a stale or wrong aggregator key.
    case wrongRecipient
    /// The sender id is not enrolled.
    case unknownSender(String)
    /// The envelope names another sender than the one the transport authenticated.
    case wrongSender(expected: String, found: String)
    case wrongKind(expected: UInt16, found: UInt16)
    /// Sealed for another round (a straggler, or a ciphertext moved between rounds).
    case wrongRound(expected: UInt64, found: UInt64)
    /// The signature over header and tags does not verify under the sender's enrolled key.
    case badSignature
    /// The ciphertext was modified: authenticated decryption failed.
    case tamperedCiphertext(chunk: Int)
    /// This nonce was already accepted from this sender: the envelope is a replay.
    case replayed
    case tooLarge(bytes: UInt64, limit: Int)

    /// A short stable label for metrics (`rejections_total{reason=...}`).
    package var reason: String {
        switch self {
        case .malformed: "malformed"
        case .unsupportedVersion: "unsupported_version"
        case .wrongRecipient: "wrong_recipient"
        case .unknownSender: "unknown_sender"
        case .wrongSender: "wrong_sender"
        case .wrongKind: "wrong_kind"
        case .wrongRound: "wrong_round"
        case .badSignature: "bad_signature"
        case .tamperedCiphertext: "tampered"
        case .replayed: "replayed"
        case .tooLarge: "too_large"
        }
    }

    package var description: String {
        switch self {
        case let .malformed(why): "not a valid sealed envelope: \(why)"
        case let .unsupportedVersion(version): "envelope version \(version) is not supported: upgrade the older node"
        case .wrongRecipient:
            "envelope is sealed to another recipient key: the sender has a wrong or old aggregator identity.public"
        case let .unknownSender(id): "sender '\(id)' is not enrolled: add its identity.public to the configuration"
        case let .wrongSender(expected, found):
            "envelope claims sender '\(found)' but the link is authenticated as '\(expected)'"
        case let .wrongKind(expected, found): "envelope is of kind \(found), expected \(expected)"
        case let .wrongRound(expected, found): "envelope is sealed for round \(found), the current round is \(expected)"
        case .badSignature: "signature does not verify under the sender's enrolled signing key"
        case let .tamperedCiphertext(chunk): "ciphertext chunk \(chunk) fails authentication: it was modified in transit"
        case .replayed: "envelope nonce was seen before: replay refused"
        case let .tooLarge(bytes, limit): "envelope declares \(bytes) payload bytes; the limit is \(limit)"
        }
    }
}
