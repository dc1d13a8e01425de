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
        let ephemeral = BoxKeyPair()
        let key = try EnvelopeKey(secret: ephemeral, peer: recipient, ephemeral: ephemeral.publicKey, recipient: recipient)
        let header = EnvelopeHeader(
            kind: kind, round: round, senderID: senderID, recipient: recipient, ephemeral: ephemeral.publicKey.bytes,
            nonce: Sodium.randomBytes(EnvelopeHeader.nonceByteCount), chunkSize: UInt32(chunkSize),
            payloadLength: UInt64(payload.count))
        let headerBytes = header.encoded()
        let chunks = header.chunkCount
        let tag = EnvelopeHeader.tagByteCount
        let payloadCount = payload.count
        let total = headerBytes.count + payloadCount + chunks * tag + SigningPublicKey.signatureByteCount
        let signer = identity.signing
        let chunkSize = chunkSize
        return ByteBlock(count: total) { out in
            headerBytes.withUnsafeBytes { out.copyMemory(from: $0) }
            let body = SendableBuffer(out)
            let input = SendableBuffer(UnsafeMutableRawBufferPointer(mutating: payload))
            EnvelopeKey.forEachChunk(chunks) { index in
                let start = index * chunkSize
                let length = min(chunkSize, payloadCount - start)
                let outStart = headerBytes.count + start + index * tag
                key.sealChunk(index: index, header: header, associated: headerBytes,
                              plaintext: UnsafeRawBufferPointer(rebasing: input.buffer[start..<(start + length)]),
                              into: UnsafeMutableRawBufferPointer(rebasing: body.buffer[outStart..<(outStart + length + tag)]))
            }
            let signed = EnvelopeKey.signedMessage(header: headerBytes, envelope: UnsafeRawBufferPointer(out),
                                                   chunks: chunks, chunkSize: chunkSize, payloadLength: payloadCount)
            let signature = signed.withUnsafeBytes { signer.sign($0) }
            out.baseAddress!.advanced(by: total - signature.count).copyMemory(from: signature, byteCount: signature.count)
        }
    }
}

/// A raw buffer shared by the chunk workers, each writing only its own disjoint range.
struct SendableBuffer: @unchecked Sendable {
    let buffer: UnsafeMutableRawBufferPointer
    init(_ buffer: UnsafeMutableRawBufferPointer) { self.buffer = buffer }
}

/// The symmetric key of one envelope, in secret memory.
final class EnvelopeKey: Sendable {
    private static let domain = Array("FedDrift envelope v1".utf8)
    private let key: SecretBytes

    /// Derives BLAKE2b(X25519(secret, peer) ‖ ephemeral ‖ recipient), keyed with the protocol domain,
    /// as libsodium recommends instead of using the raw shared point.
    convenience init(secret: BoxKeyPair, peer: BoxPublicKey, ephemeral: BoxPublicKey, recipient: BoxPublicKey)
        throws(CryptoError)
    {
        try self.init(secretKey: secret.secretKey, peer: peer, ephemeral: ephemeral, recipient: recipient)
    }

    init(secretKey: borrowing SecretBytes, peer: BoxPublicKey, ephemeral: BoxPublicKey, recipient: BoxPublicKey)
        throws(CryptoError)
    {
        // Hash input: X25519 shared point ‖ ephemeral public ‖ recipient public, all in secret memory.
        let point = Int(crypto_scalarmult_bytes())
        var failed = false
        let input = SecretBytes(count: point + 64) { input in
            secretKey.withUnsafeBytes { secret in
                failed = crypto_scalarmult(input.bytePointer, secret.bytePointer, peer.bytes) != 0
            }
            (input.baseAddress! + point).copyMemory(from: ephemeral.bytes, byteCount: 32)
            (input.baseAddress! + point + 32).copyMemory(from: recipient.bytes, byteCount: 32)
        }
        guard !failed else { throw .weakPublicKey }
        key = SecretBytes(count: Int(crypto_aead_xchacha20poly1305_ietf_keybytes())) { out in
            input.withUnsafeBytes { input in
                _ = crypto_generichash(out.bytePointer, out.count, input.bytePointer, UInt64(input.count),
                                       Self.domain, Self.domain.count)
            }
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

    func sealChunk(index: Int, header: EnvelopeHeader, associated: [UInt8], plaintext: UnsafeRawBufferPointer,
                   into out: UnsafeMutableRawBufferPointer) {
        let nonce = Self.chunkNonce(header.nonce, index: index)
        let ad = Self.chunkAssociatedData(associated, index: index, isLast: index == header.chunkCount - 1)
        let out8 = out.bytePointer
        key.withUnsafeBytes { key in
            _ = crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
                out8, out8 + plaintext.count, nil, plaintext.bytePointer, UInt64(plaintext.count),
                ad, UInt64(ad.count), nil, nonce, key.bytePointer)
        }
    }

    /// Decrypts one chunk (ciphertext followed by tag) into `out`. Returns false when it fails authentication.
    func openChunk(index: Int, header: EnvelopeHeader, associated: [UInt8], sealed: UnsafeRawBufferPointer,
                   into out: UnsafeMutableRawBufferPointer) -> Bool {
        let nonce = Self.chunkNonce(header.nonce, index: index)
        let ad = Self.chunkAssociatedData(associated, index: index, isLast: index == header.chunkCount - 1)
        let length = sealed.count - EnvelopeHeader.tagByteCount
        let in8 = sealed.bytePointer
        return key.withUnsafeBytes { key in
            crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
                out.bytePointer, nil, in8, UInt64(length), in8 + length, ad, UInt64(ad.count), nonce,
                key.bytePointer) == 0
        }
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
