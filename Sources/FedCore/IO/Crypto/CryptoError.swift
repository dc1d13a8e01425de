/// Failures of the Crypto layer other than key files and envelopes.
package enum CryptoError: Error, Equatable, CustomStringConvertible, Sendable {
    case invalidKeyLength(expected: Int, found: Int)
    /// X25519 produced the all-zero shared secret: the peer's public key is of low order (malicious).
    case weakPublicKey
    case libraryFailure(String)
    /// No public key is enrolled for this recipient id.
    case unknownRecipient(String)

    package var description: String {
        switch self {
        case let .invalidKeyLength(expected, found): "key has \(found) bytes, expected \(expected)"
        case .weakPublicKey: "the peer's public key is invalid (low-order point): refuse this peer"
        case let .libraryFailure(call): "\(call) failed in libsodium"
        case let .unknownRecipient(id): "no enrolled public key for '\(id)'"
        }
    }
}
