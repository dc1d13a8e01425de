@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

/// The protocol's bytes are pinned by golden fixtures in `Fixtures/wire`: any change to a layout
/// fails here and must come with a protocol version bump and a docs/PROTOCOL.md update.
/// `FEDDRIFT_WRITE_FIXTURES=1 swift test --filter WireFormatTests` regenerates them.
@Suite("Wire format", .serialized)
struct WireFormatTests {
    private static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/wire")
    private static let writing = ProcessInfo.processInfo.environment["FEDDRIFT_WRITE_FIXTURES"] == "1"

    private static let samples: [(name: String, message: any WireMessage)] = [
        ("hello", Hello(agentID: "region-1", softwareVersion: "0.1.0", sentAtMilliseconds: 1_700_000_000_123)),
        ("welcome", Welcome(aggregatorID: "aggregator", currentRound: 42, enrolledAgents: 3, modelVersion: 41,
                            openRound: RoundOpen(round: 42, modelVersion: 41, deadlineMilliseconds: 1_700_000_060_000,
                                                 minAgents: 2, hyperparameters: RoundHyperparameters(
                                                     samplingRate: 0.5, clipNorm: 1.0, noiseMultiplier: 0,
                                                     learningRate: 0.5, localSteps: 1, sequenceLength: 50).wire),
                            awaitingUpdate: true, thresholds: [3.5], party: 3)),
        ("model-request", ModelRequest(heldVersion: 40)),
        ("drift-histogram", DriftHistogramReport(round: 42, counts: (0..<49).map { Double($0 % 7) - 0.5 })),
        ("demand-counts", DemandCountsReport(round: 42, noiseMultiplier: 4, shoppers: 812.25,
                                             counts: (0..<16).map { Double($0 * 3 % 11) - 1.5 })),
        ("evaluation", EvaluationReport(round: 42, modelVersion: 41, users: 1000, top1Hits: 120, top10Hits: 480,
                                        lossSum: 4321.5)),
        ("round-open", RoundOpen(round: 42, modelVersion: 41, deadlineMilliseconds: 1_700_000_060_000, minAgents: 2,
                                 hyperparameters: RoundHyperparameters(samplingRate: 0.01, clipNorm: 1.0,
                                                                       noiseMultiplier: 1.1, learningRate: 0.05,
                                                                       localSteps: 1, sequenceLength: 50).wire)),
        ("model-chunk", ModelChunk(modelVersion: 41, index: 1, count: 3, totalBytes: 10, bytes: [1, 2, 3])),
        ("update", UpdateSubmission(round: 42, modelVersion: 41, users: 0, values: [1.5, -2, 0, .leastNormalMagnitude])),
        ("verdict", Verdict(round: 42, accepted: false, reason: "wrong_round")),
        ("thresholds", DriftThresholdsMessage(round: 42, thresholds: [2.5, 3.25])),
        ("heartbeat", Heartbeat(sentAtMilliseconds: 1_700_000_000_999, round: 42)),
        ("round-open-secure", RoundOpen(round: 42, modelVersion: 41, deadlineMilliseconds: 1_700_000_060_000, minAgents: 2,
                                        hyperparameters: .init(samplingRate: 0.01, clipNorm: 1, noiseMultiplier: 1.1,
                                                               learningRate: 0.05, localSteps: 1, sequenceLength: 50,
                                                               clipCountNoiseMultiplier: 0, histogramNoiseMultiplier: 0,
                                                               secureThreshold: 2, secureBits: 17))),
        ("secure-keys", SecureKeysMessage(round: 42, keys: sampleKeys(party: 2))),
        ("secure-roster", SecureRosterMessage(round: 42, roster: [sampleKeys(party: 1), sampleKeys(party: 2)])),
        ("secure-shares", SecureSharesMessage(round: 42, shares: [.init(from: 2, to: 1, box: [1, 2, 3]),
                                                                  .init(from: 2, to: 3, box: [4, 5])])),
        ("secure-forwarded-shares", SecureForwardedSharesMessage(round: 42, shares: [.init(from: 1, to: 2, box: [9])])),
        ("secure-masked-input", SecureMaskedInputMessage(round: 42, party: 2, users: 0, clipCount: -1.5,
                                                         words: [0, 1, 0xFFFF_FFFF, 0x8000_0000])),
        ("secure-survivors", SecureSurvivorsMessage(round: 42, survivors: [1, 2, 3])),
        ("secure-signature", SecureSignatureMessage(round: 42, party: 2, signature: [UInt8](repeating: 0x5A, count: 64))),
        ("secure-unmask-request", SecureUnmaskRequestMessage(round: 42, request: .init(
            survivors: [1, 2], signatures: [1: [UInt8](repeating: 1, count: 64), 2: [UInt8](repeating: 2, count: 64)]))),
        ("secure-unmask-response", SecureUnmaskResponseMessage(round: 42, response: .init(
            party: 2, selfMaskShares: [1: Shamir.Share(x: 2, values: [1, 2, 3, 4, 5])],
            maskKeyShares: [3: Shamir.Share(x: 2, values: [6, 7, 8, 9, 10])]))),
    ]

    /// Keys with fixed bytes (the layout is what is pinned, not a signature's validity).
    private static func sampleKeys(party: UInt64) -> SecureAggregation.Keys {
        // The byte counts are libsodium's constants: these cannot fail.
        let box = (try? BoxPublicKey(bytes: [UInt8](repeating: UInt8(party), count: BoxPublicKey.byteCount)))
        let mask = (try? BoxPublicKey(bytes: [UInt8](repeating: UInt8(party + 16), count: BoxPublicKey.byteCount)))
        let identity = (try? SigningPublicKey(bytes: [UInt8](repeating: UInt8(party + 32), count: SigningPublicKey.byteCount)))
        return SecureAggregation.Keys(party: party, encryptionKey: box!, maskKey: mask!, identity: identity!,
                                      signature: [UInt8](repeating: UInt8(party + 48), count: 64))
    }

    private static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
    private static func bytes(hex: String) -> [UInt8] {
        let text = Array(hex.filter(\.isHexDigit))
        return stride(from: 0, to: text.count - 1, by: 2).compactMap { UInt8(String(text[$0...$0 + 1]), radix: 16) }
    }

    private static func roundTrip<M: WireMessage>(_ message: M, fixture: [UInt8]) throws -> Bool {
        try M(decoding: fixture) == message
    }

    @Test("Every message encodes to its golden bytes and decodes back")
    func golden() throws {
        for (name, message) in Self.samples {
            let url = Self.directory.appendingPathComponent("\(name).hex")
            let encoded = message.encoded()
            if Self.writing {
                try FileManager.default.createDirectory(at: Self.directory, withIntermediateDirectories: true)
                try (Self.hex(encoded) + "\n").write(to: url, atomically: true, encoding: .utf8)
            }
            let fixture = Self.bytes(hex: try String(contentsOf: url, encoding: .utf8))
            #expect(encoded == fixture, "\(name) no longer encodes to its golden bytes")
            #expect(try Self.roundTrip(message, fixture: fixture), "\(name) does not decode back")
        }
    }

    @Test("A ledger receipt round-trips; no entries, too many, or a truncated body are refused")
    func ledgerReceipt() throws {
        let entry = LedgerReceiptMessage.Entry(
            id: 7, previousHash: [UInt8](repeating: 1, count: 32), round: 3, mechanism: "model_update", samplingRate: 0.5,
            noiseMultiplier: 1.6, rdp: [UInt8](repeating: 2, count: 1248), epsilonAfter: 2.5, createdAtMilliseconds: 99,
            hash: [UInt8](repeating: 3, count: 32), signature: [UInt8](repeating: 4, count: 64))
        let message = LedgerReceiptMessage(round: 3, entries: [entry, entry])
        #expect(try LedgerReceiptMessage(decoding: message.encoded()) == message)
        #expect(throws: WireError.self) { try LedgerReceiptMessage(decoding: LedgerReceiptMessage(round: 3, entries: []).encoded()) }
        let many = LedgerReceiptMessage(round: 3, entries: Array(repeating: entry, count: LedgerReceiptMessage.maxEntries + 1))
        #expect(throws: WireError.self) { try LedgerReceiptMessage(decoding: many.encoded()) }
        #expect(throws: WireError.self) { try LedgerReceiptMessage(decoding: Array(message.encoded().dropLast(10))) }
    }

    @Test("Truncated and padded bodies are refused")
    func truncated() {
        let bytes = Heartbeat(sentAtMilliseconds: 1, round: 2).encoded()
        #expect(throws: WireError.self) { try Heartbeat(decoding: Array(bytes.dropLast())) }
        #expect(throws: WireError.trailingBytes(count: 1)) { try Heartbeat(decoding: bytes + [0]) }
    }

    @Test("An update whose declared size disagrees with its values is refused")
    func declaredSize() {
        var bytes = UpdateSubmission(round: 1, modelVersion: 1, users: 1, values: [1, 2, 3]).encoded()
        bytes[bytes.count - 8] = 4  // the trailer's parameter count field
        #expect(throws: WireError.invalidValue(field: "values", reason: "declares 4 floats, carries 3")) {
            try UpdateSubmission(decoding: bytes)
        }
        #expect(throws: WireError.self) { try UpdateSubmission(decoding: Array(bytes.dropFirst())) }
    }

    @Test("An update opened into float storage decodes in place to the same values")
    func openedInPlace() throws {
        let update = UpdateSubmission(round: 7, modelVersion: 6, users: 3, values: (0..<1001).map { Float($0) / 7 })
        let sender = NodeIdentity(), recipient = NodeIdentity()
        let sealed = try EnvelopeSealer(identity: sender, senderID: "a", recipient: recipient.box.publicKey, chunkSize: 1000)
            .seal(update.encoded(), kind: MessageKind.update.rawValue, round: 7)
        let opener = EnvelopeOpener(recipient: recipient.box, senders: ["a": sender.signing.publicKey])
        let opened = try sealed.withUnsafeBytes { try opener.openFloats($0, expecting: .init(senderID: "a", round: 7)) }
        #expect(try UpdateSubmission(opened: opened) == update)
    }

    @Test("Out-of-range hyper-parameters and chunk indices are refused")
    func ranges() {
        var open = RoundOpen(round: 1, modelVersion: 1, deadlineMilliseconds: 0, minAgents: 1,
                             hyperparameters: RoundHyperparameters(samplingRate: 0.1, clipNorm: 1, noiseMultiplier: 1,
                                                                   learningRate: 0.1, localSteps: 1, sequenceLength: 10).wire)
        open.hyperparameters.samplingRate = 1.5
        #expect(throws: WireError.self) { try RoundOpen(decoding: open.encoded()) }
        let chunk = ModelChunk(modelVersion: 1, index: 3, count: 3, totalBytes: 1, bytes: [1])
        #expect(throws: WireError.self) { try ModelChunk(decoding: chunk.encoded()) }
    }

    @Test("A model file splits into chunks that reassemble exactly")
    func chunking() {
        let file = (0..<2_500).map { UInt8(truncatingIfNeeded: $0) }
        let chunks = ModelChunk.chunks(of: file, modelVersion: 9, chunkBytes: 1_000)
        #expect(chunks.map(\.index) == [0, 1, 2] && chunks.allSatisfy { $0.count == 3 && $0.totalBytes == 2_500 })
        #expect(chunks.flatMap(\.bytes) == file)
    }

    @Test("A sealed envelope made by an earlier build still opens (golden envelope, test-only keys)")
    func goldenEnvelope() throws {
        let keys = Self.directory.appendingPathComponent("keys")
        let aggregatorKeys = KeyDirectory(path: keys.appendingPathComponent("aggregator").path)
        let agentKeys = KeyDirectory(path: keys.appendingPathComponent("agent").path)
        let sealedURL = Self.directory.appendingPathComponent("envelope.hex")
        let payload = Hello(agentID: "region-1", softwareVersion: "0.1.0", sentAtMilliseconds: 1).encoded()
        if Self.writing {
            try? FileManager.default.removeItem(at: keys)
            try aggregatorKeys.write(NodeIdentity())
            try agentKeys.write(NodeIdentity())
            let sealer = EnvelopeSealer(identity: try agentKeys.readIdentity(), senderID: "region-1",
                                        recipient: try aggregatorKeys.readPublicIdentity().box)
            let sealed = try sealer.seal(payload, kind: MessageKind.hello.rawValue, round: 7)
            try (Self.hex(sealed.bytes) + "\n").write(to: sealedURL, atomically: true, encoding: .utf8)
        }
        chmod(aggregatorKeys.secretFilePath, 0o600)  // git keeps no modes but the executable bit
        let opener = EnvelopeOpener(recipient: try aggregatorKeys.readIdentity().box,
                                    senders: ["region-1": try agentKeys.readPublicIdentity().signing])
        let sealed = Self.bytes(hex: try String(contentsOf: sealedURL, encoding: .utf8))
        let opened = try opener.open(sealed, expecting: .init(senderID: "region-1", kind: MessageKind.hello.rawValue, round: 7))
        #expect(opened.payload == payload)
        #expect(Array(sealed.prefix(5)) == Array("FDSE".utf8) + [1])
    }
}
