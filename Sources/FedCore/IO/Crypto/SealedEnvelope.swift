internal import CSodium
import Dispatch

/// Seals payloads for one recipient: XChaCha20-Poly1305 under a key agreed between a fresh
/// ephemeral X25519 key and the recipient's static key, signed with the sender's Ed25519 key.
///
/// Why both: the AEAD keeps the payload secret from everyone but the recipient (also from a
/// compromised link), the signature proves which enrolled node produced it. Large payloads are
/// split into chunks sealed on all cores; the signature covers every chunk's tag in order, so
/// chunks cannot be dropped, reordered or swapped between envelopes.
package struct EnvelopeSealer: Sendable {
    package let identity: NodeIdentity
    package let senderID: String
    package let recipient: BoxPublicKey
    /// Bytes per AEAD chunk; chunks are sealed in parallel.
    package var chunkSize: Int

    package init(identity: NodeIdentity, senderID: String, recipient: BoxPublicKey, chunkSize: Int = 256 * 1024) {
        precondition(senderID.utf8.count <= EnvelopeHeader.maxSenderIDBytes, "sender id longer than 64 bytes")
        precondition(chunkSize > 0 && chunkSize <= Int(UInt32.max))
        self.identity = identity
        self.senderID = senderID
        self.recipient = recipient
        self.chunkSize = chunkSize
    }

    /// Seals `payload` for `round` as a message of `kind`.
    package func seal(_ payload: [UInt8], kind: UInt16, round: UInt64) throws(CryptoError) -> ByteBlock {
        try payload.withBytes { (raw) throws(CryptoError) in try seal(raw, kind: kind, round: round) }
    }

    package func seal(_ payload: UnsafeRawBufferPointer, kind: UInt16, round: UInt64) throws(CryptoError) -> ByteBlock {
        try EnvelopeKey.withSealingKey(recipient: recipient) { (key, ephemeral) in
            let header = EnvelopeHeader(
                kind: kind, round: round, senderID: senderID, recipient: recipient, ephemeral: ephemeral.bytes,
                nonce: Sodium.randomBytes(EnvelopeHeader.nonceByteCount), chunkSize: UInt32(chunkSize),
                payloadLength: UInt64(payload.count))
            let headerBytes = header.encoded()
            let chunks = header.chunkCount
            let tag = EnvelopeHeader.tagByteCount
            let payloadCount = payload.count
            let total = headerBytes.count + payloadCount + chunks * tag + SigningPublicKey.signatureByteCount
            let chunkSize = chunkSize
            return ByteBlock(count: total) { out in
                headerBytes.withUnsafeBytes { out.copyMemory(from: $0) }
                let body = SendableBuffer(out)
                let input = SendableBuffer(UnsafeMutableRawBufferPointer(mutating: payload))
                let sharedKey = key.sendable
                EnvelopeKey.forEachChunk(chunks) { index in
                    let start = index * chunkSize
                    let length = min(chunkSize, payloadCount - start)
                    let outStart = headerBytes.count + start + index * tag
                    EnvelopeKey.sealChunk(
                        key: sharedKey, index: index, header: header, associated: headerBytes,
                        plaintext: UnsafeRawBufferPointer(rebasing: input.buffer[start..<(start + length)]),
                        into: UnsafeMutableRawBufferPointer(rebasing: body.buffer[outStart..<(outStart + length + tag)]))
                }
                let signed = EnvelopeKey.signedMessage(header: headerBytes, envelope: UnsafeRawBufferPointer(out),
                                                       chunks: chunks, chunkSize: chunkSize, payloadLength: payloadCount)
                let signature = signed.withUnsafeBytes { identity.signing.sign($0) }
                UnsafeMutableRawBufferPointer(rebasing: out[(total - signature.count)...]).copyBytes(from: signature)
            }
        }
    }
}

/// A raw buffer shared by the chunk workers, each writing only its own disjoint range.
struct SendableBuffer: @unchecked Sendable {
    let buffer: UnsafeMutableRawBufferPointer
    init(_ buffer: UnsafeMutableRawBufferPointer) { self.buffer = buffer }
}

/// The symmetric key of one envelope.
///
/// Per-envelope secrets (the ephemeral X25519 secret, the shared point, the derived key) live in
/// stack memory for the duration of one seal or open and are wiped with `sodium_memzero` before it
/// returns, as libsodium's own sealed boxes do. Long-lived keys use `sodium_malloc` (``SecretBytes``);
/// using it per message costs an mmap, mprotect, mlock and munmap each time, and the TLB shootdowns
/// of those dominated the sealed throughput when measured.
struct EnvelopeKey: ~Copyable {
    private static let domain = Array("FedDrift envelope v1".utf8)
    static let byteCount = Int(crypto_aead_xchacha20poly1305_ietf_keybytes())
    /// Stack memory owned by the enclosing `with…` call.
    private let key: UnsafeRawBufferPointer

    private init(key: UnsafeRawBufferPointer) { self.key = key }

    /// Makes a fresh ephemeral key pair, agrees a key with `recipient`, and lends both to `body`.
    static func withSealingKey<R>(recipient: BoxPublicKey,
                                  _ body: (borrowing EnvelopeKey, BoxPublicKey) throws(CryptoError) -> R)
        throws(CryptoError) -> R
    {
        try withSecretScratch(count: 32) { (ephemeralSecret) throws(CryptoError) in
            randombytes_buf(ephemeralSecret.bytePointer, 32)
            var publicBytes = [UInt8](repeating: 0, count: 32)
            _ = crypto_scalarmult_base(&publicBytes, ephemeralSecret.bytePointer)
            let ephemeral = try BoxPublicKey(bytes: publicBytes)
            return try withDerivedKey(secret: UnsafeRawBufferPointer(ephemeralSecret), peer: recipient,
                                      ephemeral: ephemeral, recipient: recipient) { (key) throws(CryptoError) in
                try body(key, ephemeral)
            }
        }
    }

    /// Agrees the key of an envelope sealed to `recipient` with `ephemeral`, and lends it to `body`.
    static func withOpeningKey<R, E: Error>(recipient: BoxKeyPair, ephemeral: BoxPublicKey,
                                            _ body: (borrowing EnvelopeKey) throws(E) -> R)
        throws(CryptoError) -> Result<R, E>
    {
        try recipient.secretKey.withUnsafeBytes { (secret) throws(CryptoError) in
            try withDerivedKey(secret: secret, peer: ephemeral, ephemeral: ephemeral,
                               recipient: recipient.publicKey) { (key) throws(CryptoError) in
                do throws(E) { return .success(try body(key)) } catch { return .failure(error) }
            }
        }
    }

    /// BLAKE2b(X25519(secret, peer) ‖ ephemeral ‖ recipient), keyed with the protocol domain, as
    /// libsodium recommends instead of using the raw shared point.
    private static func withDerivedKey<R>(secret: UnsafeRawBufferPointer, peer: BoxPublicKey, ephemeral: BoxPublicKey,
                                          recipient: BoxPublicKey,
                                          _ body: (borrowing EnvelopeKey) throws(CryptoError) -> R) throws(CryptoError) -> R {
        let point = Int(crypto_scalarmult_bytes())
        return try withSecretScratch(count: point + 64 + byteCount) { (scratch) throws(CryptoError) in
            let input = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<(point + 64)])
            let keyBytes = UnsafeMutableRawBufferPointer(rebasing: scratch[(point + 64)...])
            guard crypto_scalarmult(input.bytePointer, secret.bytePointer, peer.bytes) == 0 else {
                throw .weakPublicKey
            }
            UnsafeMutableRawBufferPointer(rebasing: input[point..<(point + 32)]).copyBytes(from: ephemeral.bytes)
            UnsafeMutableRawBufferPointer(rebasing: input[(point + 32)...]).copyBytes(from: recipient.bytes)
            _ = crypto_generichash(keyBytes.bytePointer, keyBytes.count, input.bytePointer, UInt64(input.count),
                                   domain, domain.count)
            return try body(EnvelopeKey(key: UnsafeRawBufferPointer(keyBytes)))
        }
    }

    /// Stack scratch for secrets, wiped on every exit path.
    private static func withSecretScratch<R>(count: Int, _ body: (UnsafeMutableRawBufferPointer) throws(CryptoError) -> R)
        throws(CryptoError) -> R {
        try withUnsafeTemporaryAllocation(byteCount: count, alignment: 16) { (scratch) throws(CryptoError) in
            defer { Sodium.wipe(scratch) }
            return try body(scratch)
        }
    }

    /// The nonce of chunk `index`: the envelope nonce with the index XORed into its last 8 bytes.
    private static func chunkNonce(_ nonce: [UInt8], index: Int) -> [UInt8] {
        var result = nonce
        withUnsafeBytes(of: UInt64(index).littleEndian) { indexBytes in
            for offset in 0..<8 { result[16 + offset] ^= indexBytes[offset] }
        }
        return result
    }

    /// Associated data of a chunk: the header, the chunk index and whether it is the last.
    private static func chunkAssociatedData(_ header: [UInt8], index: Int, isLast: Bool) -> [UInt8] {
        var data = header
        withUnsafeBytes(of: UInt64(index).littleEndian) { data.append(contentsOf: $0) }
        data.append(isLast ? 1 : 0)
        return data
    }

    /// The key bytes for chunk workers on other threads, valid while the enclosing `with…` call runs.
    var sendable: SendableKey { SendableKey(bytes: key) }

    struct SendableKey: @unchecked Sendable {
        // @unchecked: read-only stack memory that outlives the concurrentPerform using it.
        let bytes: UnsafeRawBufferPointer
        var bytePointer: UnsafePointer<UInt8> { bytes.bytePointer }
    }

    static func sealChunk(key: SendableKey, index: Int, header: EnvelopeHeader, associated: [UInt8],
                          plaintext: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) {
        let nonce = Self.chunkNonce(header.nonce, index: index)
        let ad = Self.chunkAssociatedData(associated, index: index, isLast: index == header.chunkCount - 1)
        let out8 = out.bytePointer
        _ = crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
            out8, out8 + plaintext.count, nil, plaintext.bytePointer, UInt64(plaintext.count),
            ad, UInt64(ad.count), nil, nonce, key.bytePointer)
    }

    /// Decrypts one chunk (ciphertext followed by tag) into `out`. Returns false when it fails authentication.
    static func openChunk(key: SendableKey, index: Int, header: EnvelopeHeader, associated: [UInt8],
                          sealed: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Bool {
        let nonce = Self.chunkNonce(header.nonce, index: index)
        let ad = Self.chunkAssociatedData(associated, index: index, isLast: index == header.chunkCount - 1)
        let length = sealed.count - EnvelopeHeader.tagByteCount
        let in8 = sealed.bytePointer
        return crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
            out.bytePointer, nil, in8, UInt64(length), in8 + length, ad, UInt64(ad.count), nonce,
            key.bytePointer) == 0
    }

    /// `domain ‖ header ‖ tag₀ ‖ tag₁ ‖ …`: what the sender signs.
    static func signedMessage(header: [UInt8], envelope: UnsafeRawBufferPointer, chunks: Int, chunkSize: Int,
                              payloadLength: Int) -> [UInt8] {
        var message = domain + header
        message.reserveCapacity(message.count + chunks * EnvelopeHeader.tagByteCount)
        for index in 0..<chunks {
            let start = index * chunkSize
            let length = min(chunkSize, payloadLength - start)
            let tagStart = header.count + start + index * EnvelopeHeader.tagByteCount + length
            message.append(contentsOf: envelope[tagStart..<(tagStart + EnvelopeHeader.tagByteCount)])
        }
        return message
    }

    /// Runs `body` for every chunk index, on all cores when there are several chunks.
    static func forEachChunk(_ count: Int, _ body: @Sendable (Int) -> Void) {
        if count == 1 {
            body(0)
        } else {
            DispatchQueue.concurrentPerform(iterations: count, execute: body)
        }
    }
}
