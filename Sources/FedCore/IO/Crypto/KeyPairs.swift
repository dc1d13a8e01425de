internal import CSodium

/// An X25519 key pair: the CURVE transport identity of a node and the recipient key of sealed
/// envelopes. The secret half lives in ``SecretBytes``.
package final class BoxKeyPair: Sendable {
    package static let secretByteCount = Int(crypto_box_secretkeybytes())
    package let publicKey: BoxPublicKey
    let secretKey: SecretBytes

    /// Generates a fresh key pair from the CSPRNG.
    package convenience init() {
        self.init(secret: SecretBytes.random(count: Self.secretByteCount))
    }

    /// Derives the public key from `secret` (X25519 base-point multiplication).
    package init(secret: consuming SecretBytes) {
        var publicBytes = [UInt8](repeating: 0, count: BoxPublicKey.byteCount)
        secret.withUnsafeBytes { _ = crypto_scalarmult_base(&publicBytes, $0.bytePointer) }
        // Cannot fail: the length is the constant above.
        guard let key = try? BoxPublicKey(bytes: publicBytes) else { preconditionFailure("public key length") }
        self.publicKey = key
        self.secretKey = secret
    }
}

/// An Ed25519 key pair that signs envelopes. The secret half (libsodium's 64-byte form: seed then
/// public key) lives in ``SecretBytes``; key files store only the 32-byte seed.
package final class SigningKeyPair: Sendable {
    package static let seedByteCount = Int(crypto_sign_seedbytes())
    package let publicKey: SigningPublicKey
    let secretKey: SecretBytes

    package convenience init() {
        self.init(seed: SecretBytes.random(count: Self.seedByteCount))
    }

    /// Derives the key pair from a 32-byte seed; the seed is wiped when this returns.
    package init(seed: consuming SecretBytes) {
        precondition(seed.count == Self.seedByteCount, "Ed25519 seed must have 32 bytes")
        var publicBytes = [UInt8](repeating: 0, count: SigningPublicKey.byteCount)
        secretKey = SecretBytes(count: Int(crypto_sign_secretkeybytes())) { secret in
            seed.withUnsafeBytes { seedBytes in
                _ = crypto_sign_seed_keypair(&publicBytes, secret.bytePointer, seedBytes.bytePointer)
            }
        }
        guard let key = try? SigningPublicKey(bytes: publicBytes) else { preconditionFailure("public key length") }
        publicKey = key
    }

    /// The Ed25519 signature (64 bytes) of `message`.
    package func sign(_ message: UnsafeRawBufferPointer) -> [UInt8] {
        var signature = [UInt8](repeating: 0, count: SigningPublicKey.signatureByteCount)
        secretKey.withUnsafeBytes { secret in
            _ = crypto_sign_detached(&signature, nil, message.bytePointer, UInt64(message.count),
                                     secret.bytePointer)
        }
        return signature
    }

    /// The seed, for writing a key file. The pointer must not escape.
    func withSeed<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try secretKey.withUnsafeBytes { (secret) throws(E) in try body(UnsafeRawBufferPointer(rebasing: secret[0..<32])) }
    }
}

/// A node's whole identity: CURVE/box keys and signing keys.
package final class NodeIdentity: Sendable {
    package let box: BoxKeyPair
    package let signing: SigningKeyPair

    package init(box: BoxKeyPair, signing: SigningKeyPair) {
        self.box = box
        self.signing = signing
    }

    /// A fresh identity from the CSPRNG.
    package convenience init() { self.init(box: BoxKeyPair(), signing: SigningKeyPair()) }

    package var publicIdentity: NodePublicIdentity {
        NodePublicIdentity(box: box.publicKey, signing: signing.publicKey)
    }
}
