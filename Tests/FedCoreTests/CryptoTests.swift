@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

@Suite("Sealed envelope")
struct EnvelopeTests {
    private let aggregator = NodeIdentity()
    private let agent = NodeIdentity()

    private func opener(replayMemory: Int = 1024) -> EnvelopeOpener {
        EnvelopeOpener(recipient: aggregator.box, senders: ["region-1": agent.signing.publicKey],
                       replayMemory: replayMemory)
    }

    private func sealer(id: String = "region-1", chunkSize: Int = 64 * 1024) -> EnvelopeSealer {
        EnvelopeSealer(identity: agent, senderID: id, recipient: aggregator.box.publicKey, chunkSize: chunkSize)
    }

    @Test("Seal then open returns the payload and header", arguments: [0, 1, 65_535, 65_536, 1_000_003])
    func roundTrip(size: Int) throws {
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let sealed = try sealer().seal(payload, kind: 3, round: 17)
        let opened = try opener().open(sealed.bytes, expecting: .init(senderID: "region-1", kind: 3, round: 17))
        #expect(opened.payload == payload)
        #expect(opened.header.round == 17 && opened.header.senderID == "region-1" && opened.header.kind == 3)
        // The payload is not visible in the sealed bytes.
        if size >= 64 { #expect(!sealed.bytes.containsSubsequence(payload.prefix(64))) }
    }

    @Test("Every flipped ciphertext byte is refused as tampered")
    func tamperedCiphertext() throws {
        let payload = [UInt8](repeating: 0xAB, count: 200_000)
        var bytes = try sealer().seal(payload, kind: 1, round: 2).bytes
        let headerLength = bytes.count - payload.count - 4 * 16 - 64  // 4 chunks of 64 KiB
        for position in [headerLength, headerLength + 100_000, bytes.count - 64 - 17] {
            var copy = bytes
            copy[position] ^= 0x01
            #expect(throws: EnvelopeError.tamperedCiphertext(chunk: (position - headerLength) / (65_536 + 16))) {
                try opener().open(copy, expecting: .init(senderID: "region-1", round: 2))
            }
        }
        bytes[bytes.count - 64 - 1] ^= 1  // inside the last tag: the signature covers tags
        #expect(throws: EnvelopeError.badSignature) { try opener().open(bytes, expecting: .init()) }
    }

    @Test("An envelope sealed to another aggregator key is refused as wrong recipient")
    func wrongKey() throws {
        let sealed = try sealer().seal([1, 2, 3], kind: 1, round: 1)
        let otherAggregator = EnvelopeOpener(recipient: BoxKeyPair(), senders: ["region-1": agent.signing.publicKey])
        #expect(throws: EnvelopeError.wrongRecipient) { try otherAggregator.open(sealed.bytes, expecting: .init()) }
    }

    @Test("An envelope moved to another round is refused as wrong round")
    func wrongRound() throws {
        let sealed = try sealer().seal([1, 2, 3], kind: 1, round: 4)
        #expect(throws: EnvelopeError.wrongRound(expected: 5, found: 4)) {
            try opener().open(sealed.bytes, expecting: .init(round: 5))
        }
    }

    @Test("An envelope presented by another agent's link is refused as wrong sender")
    func wrongAgent() throws {
        let sealed = try sealer().seal([1, 2, 3], kind: 1, round: 1)
        #expect(throws: EnvelopeError.wrongSender(expected: "region-2", found: "region-1")) {
            try opener().open(sealed.bytes, expecting: .init(senderID: "region-2"))
        }
    }

    @Test("An envelope whose sender id was rewritten fails the signature")
    func forgedSenderID() throws {
        let impostor = EnvelopeOpener(recipient: aggregator.box, senders: [
            "region-1": agent.signing.publicKey, "region-2": NodeIdentity().signing.publicKey,
        ])
        let sealed = try EnvelopeSealer(identity: agent, senderID: "region-2", recipient: aggregator.box.publicKey)
            .seal([1, 2, 3], kind: 1, round: 1)
        #expect(throws: EnvelopeError.badSignature) { try impostor.open(sealed.bytes, expecting: .init()) }
    }

    @Test("An unenrolled sender is refused")
    func unknownSender() throws {
        let sealed = try sealer(id: "region-9").seal([1], kind: 1, round: 1)
        #expect(throws: EnvelopeError.unknownSender("region-9")) { try opener().open(sealed.bytes, expecting: .init()) }
    }

    @Test("A replayed envelope is refused the second time")
    func replay() throws {
        let sealed = try sealer().seal([9, 9, 9], kind: 1, round: 1).bytes
        let opener = opener()
        _ = try opener.open(sealed, expecting: .init())
        #expect(throws: EnvelopeError.replayed) { try opener.open(sealed, expecting: .init()) }
    }

    @Test("The replay memory keeps about two rounds of nonces, whatever the run's length; a replay inside it is refused, one from an older round is refused by the round binding")
    func replayMemoryFollowsRounds() throws {
        let opener = opener(replayMemory: 1 << 16)
        let sealer = sealer()
        var sizes: [Int] = []
        var kept: [UInt64: [UInt8]] = [:]
        for round in UInt64(1)...300 {
            for kind in UInt16(1)...4 {  // an update and its reports, each round
                let sealed = try sealer.seal([UInt8(kind)], kind: kind, round: round).bytes
                _ = try opener.open(sealed, expecting: .init(senderID: "region-1", kind: kind, round: round))
                if kind == 1 { kept[round] = sealed }
            }
            // A heartbeat, outside rounds: whatever round its sender writes, it does not move the window.
            _ = try opener.open(try sealer.seal([0], kind: 9, round: 1_000_000).bytes, expecting: .init())
            sizes.append(opener.replayMemoryCount)
        }
        #expect(sizes[299] == sizes[99], "memory grew with the rounds: \(sizes[99]) → \(sizes[299]) nonces")
        #expect(sizes[299] <= 5 * 3, "\(sizes[299]) nonces remembered")
        // Inside the window: refused as a replay. Older: refused because it is not the round now open.
        #expect(throws: EnvelopeError.replayed) {
            try opener.open(kept[300]!, expecting: .init(senderID: "region-1", kind: 1, round: 300))
        }
        #expect(throws: EnvelopeError.wrongRound(expected: 300, found: 5)) {
            try opener.open(kept[5]!, expecting: .init(senderID: "region-1", kind: 1, round: 300))
        }
        // The control: without the round binding the same old envelope would open again.
        #expect(throws: Never.self) { try opener.open(kept[5]!, expecting: .init()) }
    }

    @Test("A tampered envelope does not burn its nonce: the genuine one still opens")
    func forgeryDoesNotBurnNonce() throws {
        let sealed = try sealer().seal([5, 6, 7], kind: 1, round: 1).bytes
        var forged = sealed
        forged[forged.count - 64 - 17] ^= 0x80
        let opener = opener()
        #expect(throws: EnvelopeError.tamperedCiphertext(chunk: 0)) { try opener.open(forged, expecting: .init()) }
        #expect(try opener.open(sealed, expecting: .init()).payload == [5, 6, 7])
    }

    @Test("Truncated, padded and garbage envelopes are refused as malformed")
    func malformed() throws {
        let sealed = try sealer().seal([1, 2, 3, 4], kind: 1, round: 1).bytes
        for bad in [Array(sealed.dropLast()), sealed + [0], Array(sealed.prefix(10)), [UInt8](repeating: 7, count: 300)] {
            let error = #expect(throws: EnvelopeError.self) { try opener().open(bad, expecting: .init()) }
            #expect(error?.reason == "malformed")
        }
    }

    @Test("Each refusal reason is distinct")
    func distinctReasons() {
        let errors: [EnvelopeError] = [
            .tamperedCiphertext(chunk: 0), .wrongRecipient, .wrongRound(expected: 1, found: 2),
            .wrongSender(expected: "a", found: "b"), .replayed, .badSignature, .unknownSender("x"), .malformed("m"),
        ]
        #expect(Set(errors.map(\.reason)).count == errors.count)
    }
}

@Suite("Secret memory and key files")
struct KeyTests {
    private func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "feddrift-keys-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test("Secret memory is zeroed when a key is released")
    func secretZeroedOnRelease() {
        let observer = SecretMemoryProbe.Observer()
        SecretMemoryProbe.$observer.withValue(observer) {
            do { _ = NodeIdentity() }  // box secret, Ed25519 seed and 64-byte signing key
        }
        let releases = observer.releases
        #expect(releases.count >= 3)
        #expect(releases.allSatisfy { $0.allZero })
        #expect(releases.contains { $0.count == 64 })
    }

    @Test("The source array of a loaded secret is wiped, even when its length is wrong")
    func sourceWiped() throws {
        var source: [UInt8] = Array(repeating: 0x5A, count: 32)
        let before = source.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
        _ = try SecretBytes(wiping: &source, expectedCount: 32)
        // Wiped in place: a copy-on-write would zero a fresh buffer and free the secret one unwiped.
        #expect(source.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) } == before)
        #expect(source.allSatisfy { $0 == 0 })
        var short: [UInt8] = Array(repeating: 0x5A, count: 31)
        #expect(throws: CryptoError.invalidKeyLength(expected: 32, found: 31)) {
            _ = try SecretBytes(wiping: &short, expectedCount: 32)
        }
        #expect(short.allSatisfy { $0 == 0 })
    }

    @Test("keygen files round-trip, with mode 0600 for the secret and 0644 for the public file")
    func keyFileRoundTrip() throws {
        let directory = KeyDirectory(path: try temporaryDirectory())
        let identity = NodeIdentity()
        try directory.write(identity)
        let loaded = try directory.readIdentity()
        #expect(loaded.publicIdentity == identity.publicIdentity)
        #expect(try directory.readPublicIdentity() == identity.publicIdentity)
        let secretMode = try FileManager.default.attributesOfItem(atPath: directory.secretFilePath)[.posixPermissions] as? Int
        let publicMode = try FileManager.default.attributesOfItem(atPath: directory.publicFilePath)[.posixPermissions] as? Int
        #expect(secretMode == 0o600 && publicMode == 0o644)
        // A signature made with the loaded key verifies under the original public key.
        let message: [UInt8] = [1, 2, 3]
        let signature = message.withUnsafeBytes { loaded.signing.sign($0) }
        #expect(identity.signing.publicKey.verify(signature: signature, of: message))
        #expect(throws: KeyFileError.alreadyExists(path: directory.secretFilePath)) { try directory.write(NodeIdentity()) }
    }

    @Test("A secret key file readable by group or others is refused with the chmod fix")
    func insecurePermissions() throws {
        let directory = KeyDirectory(path: try temporaryDirectory())
        try directory.write(NodeIdentity())
        chmod(directory.secretFilePath, 0o640)
        let error = #expect(throws: KeyFileError.insecurePermissions(path: directory.secretFilePath, mode: 0o640)) {
            _ = try directory.readIdentity()
        }
        #expect(error?.description.contains("chmod 600") == true)
    }

    @Test("Missing, malformed and swapped key files give their own errors")
    func badKeyFiles() throws {
        let path = try temporaryDirectory()
        let directory = KeyDirectory(path: path)
        #expect(throws: KeyFileError.notFound(path: directory.secretFilePath)) { _ = try directory.readIdentity() }
        _ = FileManager.default.createFile(atPath: directory.secretFilePath,
                                       contents: Data("format: feddrift-node-secret-v1\nbox-secret: !!!\nsign-seed: AAAA\n".utf8),
                                       attributes: [.posixPermissions: 0o600])
        #expect(throws: KeyFileError.malformed(path: directory.secretFilePath, line: 2,
                                               reason: "'box-secret' is not a base64 32-byte key")) {
            _ = try directory.readIdentity()
        }
        try directory.write(NodeIdentity(), replacing: true)
        #expect(throws: KeyFileError.wrongFormat(path: directory.secretFilePath, found: "feddrift-node-public-v1",
                                                 expected: "feddrift-node-secret-v1")) {
            try FileManager.default.removeItem(atPath: directory.secretFilePath)
            try FileManager.default.copyItem(atPath: directory.publicFilePath, toPath: directory.secretFilePath)
            chmod(directory.secretFilePath, 0o600)
            _ = try directory.readIdentity()
        }
    }

    @Test("Constant-time comparison agrees with ==")
    func constantTime() {
        #expect(Sodium.constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!Sodium.constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!Sodium.constantTimeEquals([1, 2, 3], [1, 2]))
    }
}

extension [UInt8] {
    func containsSubsequence(_ needle: some Collection<UInt8>) -> Bool {
        let needle = Array(needle)
        guard !needle.isEmpty, needle.count <= count else { return false }
        return (0...(count - needle.count)).contains { self[$0..<($0 + needle.count)].elementsEqual(needle) }
    }
}
