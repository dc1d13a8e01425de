// The secure-aggregation steps (``SecureAggregation``) as wire messages. Each travels inside a sealed
// envelope between one agent and the aggregator (never broadcast), and names its round so a message of
// another round is refused. Layouts are little-endian; docs/PROTOCOL.md draws the sequence.

/// Limits on what one decoded message may allocate (a federation has at most this many parties).
package enum SecureAggregationWire {
    package static let maxParties = 4_096
    /// A share box: the sealed share plaintext (sender, recipient, round, two shares) plus crypto_box's overhead.
    static let maxBoxBytes = 1_024
    static let signatureBytes = SigningPublicKey.signatureByteCount

    static func write(_ keys: SecureAggregation.Keys, into writer: inout ByteWriter) {
        writer.write(keys.party)
        writer.write(raw: keys.encryptionKey.bytes)
        writer.write(raw: keys.maskKey.bytes)
        writer.write(raw: keys.identity.bytes)
        writer.write(raw: keys.signature)
    }

    static func readKeys(_ reader: inout ByteReader) throws(WireError) -> SecureAggregation.Keys {
        let party: UInt64 = try reader.read(field: "party")
        do {
            let encryption = try BoxPublicKey(bytes: try reader.read(count: BoxPublicKey.byteCount, field: "encryption key"))
            let mask = try BoxPublicKey(bytes: try reader.read(count: BoxPublicKey.byteCount, field: "mask key"))
            let identity = try SigningPublicKey(bytes: try reader.read(count: SigningPublicKey.byteCount, field: "identity"))
            let signature = try reader.read(count: signatureBytes, field: "signature")
            return SecureAggregation.Keys(party: party, encryptionKey: encryption, maskKey: mask, identity: identity,
                                          signature: signature)
        } catch let error as WireError {
            throw error
        } catch {
            throw .invalidValue(field: "keys", reason: "\(error)")
        }
    }

    static func write(_ shares: [SecureAggregation.SealedShares], into writer: inout ByteWriter) {
        writer.write(UInt32(shares.count))
        for share in shares {
            writer.write(share.from)
            writer.write(share.to)
            writer.write(lengthPrefixed: share.box)
        }
    }

    static func readShares(_ reader: inout ByteReader) throws(WireError) -> [SecureAggregation.SealedShares] {
        let count = Int(try reader.read(UInt32.self, field: "share count"))
        guard count <= maxParties else { throw .invalidValue(field: "share count", reason: "\(count) > \(maxParties)") }
        var shares: [SecureAggregation.SealedShares] = []
        shares.reserveCapacity(count)
        for _ in 0..<count {
            let from: UInt64 = try reader.read(field: "share sender")
            let to: UInt64 = try reader.read(field: "share recipient")
            shares.append(.init(from: from, to: to, box: try reader.readLengthPrefixed(field: "share box", limit: maxBoxBytes)))
        }
        return shares
    }

    static func write(_ parties: [UInt64], into writer: inout ByteWriter) {
        writer.write(UInt32(parties.count))
        for party in parties { writer.write(party) }
    }

    static func readParties(_ reader: inout ByteReader) throws(WireError) -> [UInt64] {
        let count = Int(try reader.read(UInt32.self, field: "party count"))
        guard count <= maxParties else { throw .invalidValue(field: "party count", reason: "\(count) > \(maxParties)") }
        var parties: [UInt64] = []
        parties.reserveCapacity(count)
        for _ in 0..<count { parties.append(try reader.read(field: "party")) }
        return parties
    }

    static func write(_ shares: [UInt64: Shamir.Share], into writer: inout ByteWriter) {
        writer.write(UInt32(shares.count))
        for (owner, share) in shares.sorted(by: { $0.key < $1.key }) {
            writer.write(owner)
            writer.write(share.x)
            for value in share.values { writer.write(value) }
        }
    }

    static func readShareMap(_ reader: inout ByteReader) throws(WireError) -> [UInt64: Shamir.Share] {
        let count = Int(try reader.read(UInt32.self, field: "share count"))
        guard count <= maxParties else { throw .invalidValue(field: "share count", reason: "\(count) > \(maxParties)") }
        var shares: [UInt64: Shamir.Share] = [:]
        for _ in 0..<count {
            let owner: UInt64 = try reader.read(field: "share owner")
            let x: UInt64 = try reader.read(field: "share point")
            var values: [UInt64] = []
            for _ in 0..<Shamir.chunkCount { values.append(try reader.read(field: "share value")) }
            guard shares.updateValue(Shamir.Share(x: x, values: values), forKey: owner) == nil else {
                throw .invalidValue(field: "share owner", reason: "party \(owner) twice")
            }
        }
        return shares
    }
}

/// Agent → aggregator, step 0: this round's public keys, signed with the agent's identity key.
package struct SecureKeysMessage: WireMessage {
    package static let kind = MessageKind.secureKeys
    package var round: UInt64
    package var keys: SecureAggregation.Keys

    package init(round: UInt64, keys: SecureAggregation.Keys) { (self.round, self.keys) = (round, keys) }

    package func encode(into writer: inout ByteWriter) {
        writer.write(round)
        SecureAggregationWire.write(keys, into: &writer)
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        round = try reader.read(field: "round")
        keys = try SecureAggregationWire.readKeys(&reader)
    }
}

/// Aggregator → agent, step 0 closed: the roster U1 (every advertised party's keys).
package struct SecureRosterMessage: WireMessage {
    package static let kind = MessageKind.secureRoster
    package var round: UInt64
    package var roster: [SecureAggregation.Keys]

    package init(round: UInt64, roster: [SecureAggregation.Keys]) { (self.round, self.roster) = (round, roster) }

    package func encode(into writer: inout ByteWriter) {
        writer.write(round)
        writer.write(UInt32(roster.count))
        for keys in roster { SecureAggregationWire.write(keys, into: &writer) }
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        round = try reader.read(field: "round")
        let count = Int(try reader.read(UInt32.self, field: "roster size"))
        guard count <= SecureAggregationWire.maxParties else {
            throw .invalidValue(field: "roster size", reason: "\(count) > \(SecureAggregationWire.maxParties)")
        }
        roster = []
        for _ in 0..<count { roster.append(try SecureAggregationWire.readKeys(&reader)) }
    }
}

/// The layout both directions of step 1 share: round, then the boxes.
package protocol SecureSharesLayout: WireMessage {
    var round: UInt64 { get }
    var shares: [SecureAggregation.SealedShares] { get }
    init(round: UInt64, shares: [SecureAggregation.SealedShares])
}

extension SecureSharesLayout {
    package func encode(into writer: inout ByteWriter) {
        writer.write(round)
        SecureAggregationWire.write(shares, into: &writer)
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        let round: UInt64 = try reader.read(field: "round")
        self.init(round: round, shares: try SecureAggregationWire.readShares(&reader))
    }
}

/// Agent → aggregator, step 1: shares boxed for each other party.
package struct SecureSharesMessage: SecureSharesLayout {
    package static let kind = MessageKind.secureShares
    package var round: UInt64
    package var shares: [SecureAggregation.SealedShares]

    package init(round: UInt64, shares: [SecureAggregation.SealedShares]) { (self.round, self.shares) = (round, shares) }
}

/// Aggregator → agent, step 1 closed: the boxes addressed to it by the parties of U2.
package struct SecureForwardedSharesMessage: SecureSharesLayout {
    package static let kind = MessageKind.secureForwardedShares
    package var round: UInt64
    package var shares: [SecureAggregation.SealedShares]

    package init(round: UInt64, shares: [SecureAggregation.SealedShares]) { (self.round, self.shares) = (round, shares) }
}

/// Agent → aggregator, step 2: the masked, noised, quantised update (words mod 2³²), with what the
/// plain update carries besides its values (users: 0 when private; the noised clip count).
package struct SecureMaskedInputMessage: WireMessage {
    package static let kind = MessageKind.secureMaskedInput
    package var round: UInt64
    package var party: UInt64
    package var users: UInt32
    package var clipCount: Double
    package var words: [UInt32]

    package init(round: UInt64, party: UInt64, users: UInt32, clipCount: Double, words: [UInt32]) {
        (self.round, self.party, self.users, self.clipCount, self.words) = (round, party, users, clipCount, words)
    }

    package func encode(into writer: inout ByteWriter) {
        writer.write(round)
        writer.write(party)
        writer.write(users)
        writer.write(clipCount)
        writer.write(UInt64(words.count))
        words.withUnsafeBytes { writer.write(raw: $0) }  // little-endian hosts only (x86-64, arm64)
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        round = try reader.read(field: "round")
        party = try reader.read(field: "party")
        users = try reader.read(field: "users")
        clipCount = try reader.readDouble(field: "clip count")
        guard clipCount.isFinite else { throw .invalidValue(field: "clip count", reason: "\(clipCount)") }
        let count = try reader.read(UInt64.self, field: "word count")
        guard count <= UInt64(reader.remaining / 4), reader.remaining == Int(count) * 4 else {
            throw .invalidValue(field: "word count", reason: "\(count) words declared, \(reader.remaining) bytes carried")
        }
        // Same bit layout as float32: one copy.
        words = try reader.readFloats(count: Int(count), field: "words").map(\.bitPattern)
    }
}

/// Aggregator → agent, step 2 closed: the survivors U3, for the agent to sign.
package struct SecureSurvivorsMessage: WireMessage {
    package static let kind = MessageKind.secureSurvivors
    package var round: UInt64
    package var survivors: [UInt64]

    package init(round: UInt64, survivors: [UInt64]) { (self.round, self.survivors) = (round, survivors) }

    package func encode(into writer: inout ByteWriter) {
        writer.write(round)
        SecureAggregationWire.write(survivors, into: &writer)
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        round = try reader.read(field: "round")
        survivors = try SecureAggregationWire.readParties(&reader)
    }
}

/// Agent → aggregator, step 3: its signature of U3.
package struct SecureSignatureMessage: WireMessage {
    package static let kind = MessageKind.secureSignature
    package var round: UInt64
    package var party: UInt64
    package var signature: [UInt8]

    package init(round: UInt64, party: UInt64, signature: [UInt8]) {
        (self.round, self.party, self.signature) = (round, party, signature)
    }

    package func encode(into writer: inout ByteWriter) {
        writer.write(round)
        writer.write(party)
        writer.write(raw: signature)
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        round = try reader.read(field: "round")
        party = try reader.read(field: "party")
        signature = try reader.read(count: SecureAggregationWire.signatureBytes, field: "signature")
    }
}

/// Aggregator → agent, step 4: U3 and the survivors' signatures of it.
package struct SecureUnmaskRequestMessage: WireMessage {
    package static let kind = MessageKind.secureUnmaskRequest
    package var round: UInt64
    package var request: SecureAggregation.UnmaskRequest

    package init(round: UInt64, request: SecureAggregation.UnmaskRequest) { (self.round, self.request) = (round, request) }

    package func encode(into writer: inout ByteWriter) {
        writer.write(round)
        SecureAggregationWire.write(request.survivors, into: &writer)
        writer.write(UInt32(request.signatures.count))
        for (party, signature) in request.signatures.sorted(by: { $0.key < $1.key }) {
            writer.write(party)
            writer.write(raw: signature)
        }
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        round = try reader.read(field: "round")
        let survivors = try SecureAggregationWire.readParties(&reader)
        let count = Int(try reader.read(UInt32.self, field: "signature count"))
        guard count <= SecureAggregationWire.maxParties else {
            throw .invalidValue(field: "signature count", reason: "\(count) > \(SecureAggregationWire.maxParties)")
        }
        var signatures: [UInt64: [UInt8]] = [:]
        for _ in 0..<count {
            let party: UInt64 = try reader.read(field: "party")
            let signature = try reader.read(count: SecureAggregationWire.signatureBytes, field: "signature")
            guard signatures.updateValue(signature, forKey: party) == nil else {
                throw .invalidValue(field: "signatures", reason: "party \(party) twice")
            }
        }
        request = SecureAggregation.UnmaskRequest(survivors: survivors, signatures: signatures)
    }
}

/// Agent → aggregator, step 4: its shares of the survivors' self-mask seeds and of the dropped
/// parties' mask keys.
package struct SecureUnmaskResponseMessage: WireMessage {
    package static let kind = MessageKind.secureUnmaskResponse
    package var round: UInt64
    package var response: SecureAggregation.UnmaskResponse

    package init(round: UInt64, response: SecureAggregation.UnmaskResponse) { (self.round, self.response) = (round, response) }

    package func encode(into writer: inout ByteWriter) {
        writer.write(round)
        writer.write(response.party)
        SecureAggregationWire.write(response.selfMaskShares, into: &writer)
        SecureAggregationWire.write(response.maskKeyShares, into: &writer)
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        round = try reader.read(field: "round")
        let party: UInt64 = try reader.read(field: "party")
        let selfMasks = try SecureAggregationWire.readShareMap(&reader)
        let maskKeys = try SecureAggregationWire.readShareMap(&reader)
        response = SecureAggregation.UnmaskResponse(party: party, selfMaskShares: selfMasks, maskKeyShares: maskKeys)
    }
}
