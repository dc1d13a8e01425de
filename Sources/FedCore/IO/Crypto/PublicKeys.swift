internal import CSodium
import Foundation

/// An X25519 public key (libsodium box / CURVE), 32 bytes.
package struct BoxPublicKey: Hashable, Sendable, CustomStringConvertible {
    package static let byteCount = Int(crypto_box_publickeybytes())
    package let bytes: [UInt8]

    package init(bytes: [UInt8]) throws(CryptoError) {
        guard bytes.count == Self.byteCount else {
            throw .invalidKeyLength(expected: Self.byteCount, found: bytes.count)
        }
        self.bytes = bytes
    }

    /// Standard base64, as written in key files.
    package var base64: String { Data(bytes).base64EncodedString() }
    /// A short, stable name for logs: the first 8 bytes of the key in hex.
    package var fingerprint: String { Digest.hex(bytes.prefix(8)) }
    package var description: String { "box:\(fingerprint)" }
}

/// An Ed25519 public key (libsodium sign), 32 bytes.
package struct SigningPublicKey: Hashable, Sendable, CustomStringConvertible {
    package static let byteCount = Int(crypto_sign_publickeybytes())
    package static let signatureByteCount = Int(crypto_sign_bytes())
    package let bytes: [UInt8]

    package init(bytes: [UInt8]) throws(CryptoError) {
        guard bytes.count == Self.byteCount else {
            throw .invalidKeyLength(expected: Self.byteCount, found: bytes.count)
        }
        self.bytes = bytes
    }

    package var base64: String { Data(bytes).base64EncodedString() }
    package var fingerprint: String { Digest.hex(bytes.prefix(8)) }
    package var description: String { "sign:\(fingerprint)" }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    package func verify(signature: [UInt8], of message: [UInt8]) -> Bool {
        signature.withUnsafeBytes { sig in
            message.withUnsafeBytes { msg in
                sig.count == Self.signatureByteCount && crypto_sign_verify_detached(
                    sig.bytePointer, msg.bytePointer, UInt64(msg.count), bytes) == 0
            }
        }
    }
}

/// The public half of a node's identity: what an operator enrolls. Safe to share and log.
package struct NodePublicIdentity: Hashable, Sendable, CustomStringConvertible {
    /// Authenticates the node on the CURVE link and receives envelopes sealed to it.
    package let box: BoxPublicKey
    /// Verifies the node's envelope signatures.
    package let signing: SigningPublicKey

    package init(box: BoxPublicKey, signing: SigningPublicKey) {
        self.box = box
        self.signing = signing
    }

    package var description: String { "\(box) \(signing)" }
}
