internal import CSodium

/// HMAC-SHA-256 (RFC 2104, libsodium's `crypto_auth_hmacsha256_*`) under a shared secret that lives
/// in ``SecretBytes``: locked, guarded, wiped when the authenticator is released. Alert webhooks sign
/// their bodies with it so a receiver can tell FedDrift's deliveries from anyone else's POSTs.
package final class MessageAuthenticator: Sendable {
    private let key: SecretBytes

    /// Takes the secret from `secret` and wipes `secret`. At least 16 bytes: a shorter shared secret
    /// is guessable.
    package init(wiping secret: inout [UInt8]) throws(CryptoError) {
        guard secret.count >= 16 else {
            let found = secret.count
            Sodium.wipe(&secret)
            throw .invalidKeyLength(expected: 16, found: found)
        }
        key = try SecretBytes(wiping: &secret, expectedCount: secret.count)
    }

    /// The 32-byte HMAC-SHA-256 of the concatenation of `parts`.
    package func authenticate(_ parts: [UInt8]...) -> [UInt8] { tag(parts) }

    /// Whether `tag` is the HMAC of `parts`, compared in constant time.
    package func verify(_ tag: [UInt8], _ parts: [UInt8]...) -> Bool {
        Sodium.constantTimeEquals(self.tag(parts), tag)
    }

    private func tag(_ parts: [[UInt8]]) -> [UInt8] {
        var state = crypto_auth_hmacsha256_state()
        defer { withUnsafeMutableBytes(of: &state) { Sodium.wipe($0) } }
        key.withUnsafeBytes { key in _ = crypto_auth_hmacsha256_init(&state, key.bytePointer, key.count) }
        for part in parts {
            part.withUnsafeBytes { bytes in
                _ = crypto_auth_hmacsha256_update(&state, bytes.bytePointer, UInt64(bytes.count))
            }
        }
        var tag = [UInt8](repeating: 0, count: Int(crypto_auth_hmacsha256_BYTES))
        _ = crypto_auth_hmacsha256_final(&state, &tag)
        return tag
    }
}
