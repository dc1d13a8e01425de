/// The clear-text header of a sealed envelope. All of it is associated data of every chunk's AEAD
/// and covered by the signature, so a ciphertext cannot be moved to another round, sender, kind or
/// recipient, and a fresh nonce makes every envelope unique.
///
/// Layout (little-endian): magic `FDSE` · version u8 · kind u16 · round u64 · sender id (u16 length +
/// UTF-8, ≤ 64 bytes) · recipient X25519 key (32) · ephemeral X25519 key (32) · nonce (24) ·
/// chunk size u32 · payload length u64. Then the chunks, each ciphertext followed by its 16-byte
/// Poly1305 tag, then the 64-byte Ed25519 signature of `"FedDrift envelope v1" ‖ header ‖ tags`.
package struct EnvelopeHeader: Sendable, Equatable {
    static let magic: [UInt8] = Array("FDSE".utf8)
    package static let version: UInt8 = 1
    static let maxSenderIDBytes = 64
    static let tagByteCount = 16
    static let nonceByteCount = 24

    package var kind: UInt16
    package var round: UInt64
    package var senderID: String
    package var recipient: BoxPublicKey
    package var ephemeral: [UInt8]
    package var nonce: [UInt8]
    package var chunkSize: UInt32
    package var payloadLength: UInt64

    var chunkCount: Int {
        payloadLength == 0 ? 1 : Int((payloadLength + UInt64(chunkSize) - 1) / UInt64(chunkSize))
    }

    func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 160)
        writer.write(raw: Self.magic)
        writer.write(Self.version)
        writer.write(kind)
        writer.write(round)
        writer.write(string: senderID)
        writer.write(raw: recipient.bytes)
        writer.write(raw: ephemeral)
        writer.write(raw: nonce)
        writer.write(chunkSize)
        writer.write(payloadLength)
        return writer.bytes
    }

    /// Decodes a header and returns it with its encoded length.
    static func decode(_ bytes: UnsafeRawBufferPointer) throws(EnvelopeError) -> (EnvelopeHeader, Int) {
        var reader = ByteReader(bytes)
        do {
            guard try reader.read(count: 4, field: "magic") == magic else { throw EnvelopeError.malformed("bad magic") }
            let version = try reader.read(UInt8.self, field: "version")
            guard version == Self.version else { throw EnvelopeError.unsupportedVersion(version) }
            let kind = try reader.read(UInt16.self, field: "kind")
            let round = try reader.read(UInt64.self, field: "round")
            let sender = try reader.readString(field: "sender", limit: maxSenderIDBytes)
            let recipient = try BoxPublicKey(bytes: try reader.read(count: 32, field: "recipient"))
            let ephemeral = try reader.read(count: 32, field: "ephemeral")
            let nonce = try reader.read(count: nonceByteCount, field: "nonce")
            let chunkSize = try reader.read(UInt32.self, field: "chunk size")
            guard chunkSize > 0 else { throw EnvelopeError.malformed("zero chunk size") }
            let length = try reader.read(UInt64.self, field: "payload length")
            let header = EnvelopeHeader(kind: kind, round: round, senderID: sender, recipient: recipient,
                                        ephemeral: ephemeral, nonce: nonce, chunkSize: chunkSize, payloadLength: length)
            return (header, reader.offset)
        } catch {
            if let error = error as? EnvelopeError { throw error }
            throw .malformed("\(error)")
        }
    }
}
