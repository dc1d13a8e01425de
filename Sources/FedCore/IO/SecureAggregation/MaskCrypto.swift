internal import CSodium

/// The libsodium primitives of secure aggregation: X25519 agreement hashed into a mask seed, the
/// ChaCha20 mask stream over ℤ/2³², and the authenticated box that carries Shamir shares between
/// two agents through the aggregator.
package enum MaskCrypto {
    package static let seedByteCount = 32
    static let boxNonceBytes = Int(crypto_box_noncebytes())
    static let boxMacBytes = Int(crypto_box_macbytes())

    /// The pairwise mask seed of `mine` and `theirs` for `round`: BLAKE2b-256 of a label, the round,
    /// both public keys in byte order and the X25519 shared secret, so both ends derive the same seed
    /// and no two rounds or pairs share one. Throws `.weakPublicKey` for a low-order peer key.
    package static func pairwiseSeed(_ mine: BoxKeyPair, _ theirs: BoxPublicKey, round: UInt64) throws(CryptoError) -> [UInt8] {
        var shared = [UInt8](repeating: 0, count: Int(crypto_scalarmult_bytes()))
        defer { Sodium.wipe(&shared) }
        let status = mine.secretKey.withUnsafeBytes { secret in
            crypto_scalarmult(&shared, secret.bytePointer, theirs.bytes)
        }
        guard status == 0 else { throw .weakPublicKey }
        let (low, high) = mine.publicKey.bytes.lexicographicallyPrecedes(theirs.bytes)
            ? (mine.publicKey.bytes, theirs.bytes) : (theirs.bytes, mine.publicKey.bytes)
        return hash(label: "FedDrift secagg pairwise mask v1", round: round, parts: [low, high, shared])
    }

    /// BLAKE2b-256 of `label`, `round` (little-endian) and `parts`.
    static func hash(label: String, round: UInt64, parts: [[UInt8]]) -> [UInt8] {
        var writer = ByteWriter(capacity: 128)
        writer.write(raw: label.utf8)
        writer.write(round)
        for part in parts { writer.write(raw: part) }
        var input = writer.bytes
        defer { Sodium.wipe(&input) }
        return Digest.blake2b256(input)
    }

    /// Adds (`sign` = 1) or subtracts (`sign` = −1) the ChaCha20 keystream of `seed` (as little-endian
    /// 32-bit words, nonce `stream`) to `words`, modulo 2³². The stream is uniform on (ℤ/2³²)^n.
    package static func applyMask(seed: [UInt8], stream: UInt8, sign: Int, to words: inout [UInt32]) {
        precondition(seed.count == seedByteCount && (sign == 1 || sign == -1))
        guard !words.isEmpty else { return }
        var nonce = [UInt8](repeating: 0, count: Int(crypto_stream_chacha20_ietf_noncebytes()))
        nonce[0] = stream
        // Blocks of 16 Ki words: the keystream never exists whole, and the loop stays in cache.
        let block = 16_384
        var keystream = [UInt32](repeating: 0, count: block)
        defer { keystream.withUnsafeMutableBytes { sodium_memzero($0.baseAddress, $0.count) } }
        var start = 0
        while start < words.count {
            let count = min(block, words.count - start)
            keystream.withUnsafeMutableBytes { raw in
                // Block counter ic: each 64-byte ChaCha block is 16 words, so this block starts at start/16.
                _ = crypto_stream_chacha20_ietf_xor_ic(raw.bytePointer, zeroes, UInt64(count * 4), nonce,
                                                       UInt32(start / 16), seed)
            }
            words.withUnsafeMutableBufferPointer { target in
                keystream.withUnsafeBufferPointer { mask in
                    if sign == 1 {
                        for i in 0..<count { target[start + i] &+= UInt32(littleEndian: mask[i]) }
                    } else {
                        for i in 0..<count { target[start + i] &-= UInt32(littleEndian: mask[i]) }
                    }
                }
            }
            start += count
        }
    }

    /// 64 KiB of zeroes: XOR with it is the plain keystream.
    private static let zeroes = [UInt8](repeating: 0, count: 16_384 * 4)

    /// `plaintext` boxed from `sender` to `recipient` (X25519 + XSalsa20-Poly1305, random nonce first).
    package static func seal(_ plaintext: [UInt8], from sender: BoxKeyPair, to recipient: BoxPublicKey) -> [UInt8] {
        let nonce = Sodium.randomBytes(boxNonceBytes)
        var cipher = [UInt8](repeating: 0, count: plaintext.count + boxMacBytes)
        let status = sender.secretKey.withUnsafeBytes { secret in
            crypto_box_easy(&cipher, plaintext, UInt64(plaintext.count), nonce, recipient.bytes, secret.bytePointer)
        }
        precondition(status == 0, "crypto_box_easy with valid key lengths")
        return nonce + cipher
    }

    /// The plaintext of a box from `sender` to `recipient`, or nil when it was not made by them (or altered).
    package static func open(_ box: [UInt8], from sender: BoxPublicKey, to recipient: BoxKeyPair) -> [UInt8]? {
        guard box.count >= boxNonceBytes + boxMacBytes else { return nil }
        let nonce = Array(box[0..<boxNonceBytes]), cipher = Array(box[boxNonceBytes...])
        var plaintext = [UInt8](repeating: 0, count: cipher.count - boxMacBytes)
        let status = recipient.secretKey.withUnsafeBytes { secret in
            crypto_box_open_easy(&plaintext, cipher, UInt64(cipher.count), nonce, sender.bytes, secret.bytePointer)
        }
        return status == 0 ? plaintext : nil
    }
}
