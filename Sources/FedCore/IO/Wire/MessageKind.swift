/// Every message type of the FedDrift protocol. The raw value is on the wire (frame header) and
/// inside sealed envelopes (bound as associated data), so a ciphertext of one kind can never be
/// accepted as another.
package enum MessageKind: UInt16, Sendable, CaseIterable {
    /// Agent → aggregator: registration (sealed).
    case hello = 1
    /// Aggregator → agent: registration accepted, with the current round (sealed to the agent).
    case welcome = 2
    /// Aggregator → agents (signed announcement, and inside welcomes): a round is open.
    case roundOpen = 3
    /// Aggregator → agent (sealed): one chunk of the global model.
    case modelChunk = 4
    /// Agent → aggregator (sealed): the round's update.
    case update = 5
    /// Aggregator → agent (sealed): accepted, or refused with a reason.
    case verdict = 6
    /// Aggregator → agents (signed announcement): drift thresholds.
    case thresholds = 7
    /// Agent → aggregator (sealed): liveness.
    case heartbeat = 8
    /// Agent → aggregator (sealed): held-out evaluation of the global model.
    case metrics = 9
    /// Agent → aggregator (sealed): send the current model.
    case modelRequest = 10
    /// Agent → aggregator (sealed): DP histogram of its users' drift scores.
    case driftHistogram = 11
    /// Agent → aggregator (sealed): the privacy-ledger entries charged for the round's releases.
    case ledgerReceipt = 12
    // Secure aggregation (``SecureAggregation``), each sealed between one agent and the aggregator.
    /// Agent → aggregator, step 0: the round's public keys.
    case secureKeys = 13
    /// Aggregator → agent: the roster U1.
    case secureRoster = 14
    /// Agent → aggregator, step 1: shares boxed for the other parties.
    case secureShares = 15
    /// Aggregator → agent: the boxes addressed to it by U2.
    case secureForwardedShares = 16
    /// Agent → aggregator, step 2: the masked update.
    case secureMaskedInput = 17
    /// Aggregator → agent: the survivors U3 to sign.
    case secureSurvivors = 18
    /// Agent → aggregator, step 3: its signature of U3.
    case secureSignature = 19
    /// Aggregator → agent, step 4: U3 with the survivors' signatures.
    case secureUnmaskRequest = 20
    /// Agent → aggregator, step 4: its shares for unmasking.
    case secureUnmaskResponse = 21
    /// Agent → aggregator (sealed): noised shoppers per category since its previous release (demand trends).
    case demandCounts = 22
}

/// The first frame of every FedDrift message: `F` `D`, protocol version, kind (u16 LE).
package struct WireHeader: Sendable, Equatable {
    package static let protocolVersion: UInt8 = 2
    static let magic: [UInt8] = [0x46, 0x44]
    package static let byteCount = 5

    package var kind: MessageKind
    package var version: UInt8

    package init(kind: MessageKind, version: UInt8 = protocolVersion) {
        self.kind = kind
        self.version = version
    }

    package var bytes: [UInt8] {
        Self.magic + [version, UInt8(kind.rawValue & 0xFF), UInt8(kind.rawValue >> 8)]
    }

    package init(decoding bytes: [UInt8]) throws(WireError) {
        guard bytes.count == Self.byteCount else {
            throw .invalidValue(field: "header", reason: "\(bytes.count) bytes, expected \(Self.byteCount)")
        }
        guard Array(bytes[0..<2]) == Self.magic else { throw .invalidValue(field: "header", reason: "not a FedDrift message") }
        guard bytes[2] == Self.protocolVersion else {
            throw .unsupportedVersion(found: Int(bytes[2]), supported: Int(Self.protocolVersion))
        }
        let raw = UInt16(bytes[3]) | UInt16(bytes[4]) << 8
        guard let kind = MessageKind(rawValue: raw) else {
            throw .invalidValue(field: "kind", reason: "unknown message kind \(raw)")
        }
        self.init(kind: kind, version: bytes[2])
    }
}
