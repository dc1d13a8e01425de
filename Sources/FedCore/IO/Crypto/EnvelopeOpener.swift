import Synchronization

/// What the receiver knows independently of the envelope, and so requires of it.
package struct EnvelopeExpectation: Sendable {
    /// The sender the transport authenticated (CURVE user id); `nil` accepts any enrolled sender.
    package var senderID: String?
    package var kind: UInt16?
    /// The round now open; `nil` for messages outside rounds (hello, heartbeat).
    package var round: UInt64?

    package init(senderID: String? = nil, kind: UInt16? = nil, round: UInt64? = nil) {
        self.senderID = senderID
        self.kind = kind
        self.round = round
    }
}

/// An envelope that passed every check.
package struct OpenedEnvelope: Sendable {
    package let header: EnvelopeHeader
    package let payload: [UInt8]
}

/// An opened envelope whose payload was decrypted straight into float32-aligned storage: `storage`
/// holds the `byteCount` payload bytes (its last float zero-padded). Large float payloads (model
/// updates) are then used in place, with no further copy.
package struct OpenedFloatEnvelope: Sendable {
    package let header: EnvelopeHeader
    package var storage: [Float]
    package let byteCount: Int
}

/// Opens envelopes sealed to one recipient from a set of enrolled senders.
///
/// Checks run cheapest first and each failure has its own ``EnvelopeError``: structure and size,
/// recipient, sender enrolment and binding to the authenticated link, kind, round, signature,
/// replay, then authenticated decryption of every chunk (in parallel). Only then is the nonce
/// remembered, so a forged envelope cannot burn a legitimate nonce.
package final class EnvelopeOpener: Sendable {
    private let recipient: BoxKeyPair
    private let senders: Mutex<[String: SigningPublicKey]>
    private let replay: ReplayGuard
    /// The largest payload accepted, in bytes.
    package let maxPayloadBytes: Int

    package init(recipient: BoxKeyPair, senders: [String: SigningPublicKey], maxPayloadBytes: Int = 256 << 20,
                 replayMemory: Int = 1 << 16) {
        self.recipient = recipient
        self.senders = Mutex(senders)
        self.replay = ReplayGuard(capacity: replayMemory)
        self.maxPayloadBytes = maxPayloadBytes
    }

    /// Nonces the replay guard remembers now (tests, diagnostics).
    package var replayMemoryCount: Int { replay.count }

    /// Enrols (or replaces) a sender's signing key.
    package func enroll(_ id: String, signing: SigningPublicKey) { senders.withLock { $0[id] = signing } }

    package func open(_ envelope: [UInt8], expecting expectation: EnvelopeExpectation) throws(EnvelopeError)
        -> OpenedEnvelope
    {
        try envelope.withBytes { (raw) throws(EnvelopeError) in try open(raw, expecting: expectation) }
    }

    package func open(_ envelope: UnsafeRawBufferPointer, expecting expectation: EnvelopeExpectation)
        throws(EnvelopeError) -> OpenedEnvelope
    {
        let (header, payload, _) = try open(envelope, expecting: expectation, as: UInt8.self)
        return OpenedEnvelope(header: header, payload: payload)
    }

    /// Like ``open(_:expecting:)``, decrypting into float32 storage (see ``OpenedFloatEnvelope``).
    package func openFloats(_ envelope: UnsafeRawBufferPointer, expecting expectation: EnvelopeExpectation)
        throws(EnvelopeError) -> OpenedFloatEnvelope
    {
        let (header, storage, byteCount) = try open(envelope, expecting: expectation, as: Float.self)
        return OpenedFloatEnvelope(header: header, storage: storage, byteCount: byteCount)
    }

    private func open<Element: BitwiseCopyable>(_ envelope: UnsafeRawBufferPointer,
                                                 expecting expectation: EnvelopeExpectation, as _: Element.Type)
        throws(EnvelopeError) -> (EnvelopeHeader, [Element], Int)
    {
        let (header, headerLength) = try EnvelopeHeader.decode(envelope)
        guard header.payloadLength <= UInt64(maxPayloadBytes) else {
            throw .tooLarge(bytes: header.payloadLength, limit: maxPayloadBytes)
        }
        let payloadLength = Int(header.payloadLength)
        let chunks = header.chunkCount
        let expectedTotal = headerLength + payloadLength + chunks * EnvelopeHeader.tagByteCount
            + SigningPublicKey.signatureByteCount
        guard envelope.count == expectedTotal else {
            throw .malformed("declares \(payloadLength) payload bytes, so \(expectedTotal) bytes in all, but has \(envelope.count)")
        }
        guard header.recipient == recipient.publicKey else { throw .wrongRecipient }
        guard let signingKey = senders.withLock({ $0[header.senderID] }) else { throw .unknownSender(header.senderID) }
        if let expected = expectation.senderID, expected != header.senderID {
            throw .wrongSender(expected: expected, found: header.senderID)
        }
        if let expected = expectation.kind, expected != header.kind {
            throw .wrongKind(expected: expected, found: header.kind)
        }
        if let expected = expectation.round, expected != header.round {
            throw .wrongRound(expected: expected, found: header.round)
        }
        let headerBytes = Array(envelope[0..<headerLength])
        let signed = EnvelopeKey.signedMessage(header: headerBytes, envelope: envelope, chunks: chunks,
                                               chunkSize: Int(header.chunkSize), payloadLength: payloadLength)
        let signature = envelope[(envelope.count - SigningPublicKey.signatureByteCount)...]
        guard signingKey.verify(signature: Array(signature), of: signed) else { throw .badSignature }
        let replayKey = ReplayGuard.Key(sender: header.senderID, nonce: header.nonce)
        guard !replay.contains(replayKey) else { throw .replayed }

        let ephemeral: BoxPublicKey
        do {
            ephemeral = try BoxPublicKey(bytes: header.ephemeral)
        } catch {
            throw .malformed("invalid ephemeral key: \(error)")
        }
        let chunkSize = Int(header.chunkSize)
        let tag = EnvelopeHeader.tagByteCount
        let sealed = SendableBuffer(UnsafeMutableRawBufferPointer(mutating: envelope))
        let opened: Result<[Element], EnvelopeError>
        do {
            opened = try EnvelopeKey.withOpeningKey(recipient: recipient, ephemeral: ephemeral) {
                (key) throws(EnvelopeError) -> [Element] in
                let sharedKey = key.sendable
                let failedChunk = Atomic<Int>(-1)
                let stride = MemoryLayout<Element>.stride
                let elements = (payloadLength + stride - 1) / stride
                let payload = [Element](unsafeUninitializedCapacity: elements) { buffer, count in
                    let raw = UnsafeMutableRawBufferPointer(buffer)
                    // Zero the padding after the payload in the last element.
                    raw[payloadLength..<(elements * stride)].initializeMemory(as: UInt8.self, repeating: 0)
                    let out = SendableBuffer(raw)
                    EnvelopeKey.forEachChunk(chunks) { index in
                        let start = index * chunkSize
                        let length = min(chunkSize, payloadLength - start)
                        let inStart = headerLength + start + index * tag
                        let ok = EnvelopeKey.openChunk(
                            key: sharedKey, index: index, header: header, associated: headerBytes,
                            sealed: UnsafeRawBufferPointer(rebasing: sealed.buffer[inStart..<(inStart + length + tag)]),
                            into: UnsafeMutableRawBufferPointer(rebasing: out.buffer[start..<(start + length)]))
                        if !ok { failedChunk.store(index, ordering: .relaxed) }
                    }
                    count = elements
                }
                let failed = failedChunk.load(ordering: .relaxed)
                guard failed < 0 else { throw .tamperedCiphertext(chunk: failed) }
                return payload
            }
        } catch {
            throw .malformed("invalid ephemeral key: \(error)")
        }
        let payload = try opened.get()
        // A concurrent twin may have won the race. Only a round the receiver expected moves the window (an
        // envelope's own round number is the sender's to choose).
        guard replay.insert(replayKey, round: header.round, current: expectation.round != nil) else { throw .replayed }
        return (header, payload, payloadLength)
    }
}

/// Remembers the nonces of accepted envelopes, per sender, so that none is accepted twice.
///
/// Nonces are 24 random bytes, so a legitimate repeat never happens. The guard remembers each nonce with its
/// envelope's round and forgets those more than two rounds behind the newest round the receiver expected: a
/// replay that old is refused by the round binding for round messages (and every envelope is bound to the
/// CURVE link of its sender, so only the sender itself could replay a hello or heartbeat). Before, it held
/// up to a million nonces, about 140 bytes each: a 16-agent federation grew the aggregator by 9 KiB a round
/// for 16,000 rounds (the 1,000-round soak, docs/EVALUATION.md). `capacity` is the backstop against one
/// round's flood: past it the oldest half is forgotten.
final class ReplayGuard: Sendable {
    struct Key: Hashable, Sendable {
        let sender: String
        let nonce: [UInt8]
    }

    /// Rounds behind the newest expected one whose nonces are still remembered.
    static let roundsKept: UInt64 = 2

    private struct State {
        var seen: [Key: UInt64] = [:]
        var order: [Key] = []
        var newest: UInt64 = 0
    }

    private let state = Mutex(State())
    private let capacity: Int

    init(capacity: Int) { self.capacity = max(capacity, 2) }

    /// Nonces remembered now.
    var count: Int { state.withLock { $0.seen.count } }

    func contains(_ key: Key) -> Bool { state.withLock { $0.seen[key] != nil } }

    /// Records `key`, of an envelope of `round` (`current`: the round the receiver expected, which moves the
    /// window); returns false when it was already there.
    func insert(_ key: Key, round: UInt64, current: Bool) -> Bool {
        state.withLock { state in
            guard state.seen[key] == nil else { return false }
            // Outside rounds (hello, heartbeat) the envelope's number is the sender's: file it under the newest.
            state.seen[key] = current ? round : state.newest
            state.order.append(key)
            if current, round > state.newest {
                state.newest = round
                if round > Self.roundsKept {
                    let oldest = round - Self.roundsKept
                    let kept = state.seen.filter { $0.value >= oldest }
                    state.seen = kept
                    state.order.removeAll { kept[$0] == nil }
                }
            }
            if state.seen.count > capacity {
                let dropped = state.order.count / 2
                for old in state.order[..<dropped] { state.seen[old] = nil }
                state.order.removeFirst(dropped)
            }
            return true
        }
    }
}
