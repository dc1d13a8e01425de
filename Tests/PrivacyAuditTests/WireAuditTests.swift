@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Synchronization
import TestSupport
import Testing

/// Audit 5: raw data never leaves the agent. A real `aggregator` and a real `edge-agent` run a round on
/// 127.0.0.1 through a recording relay the test puts between them (it holds the aggregator's CURVE keys
/// towards the agent and the agent's towards the aggregator, so it sees every frame after the transport
/// decryption — exactly what an attacker who broke CURVE would see).
@Suite("Audit 5: raw data never leaves the agent", .serialized, .timeLimit(.minutes(3)))
struct WireAuditTests {
    @Test("Audit 5: captured agent→aggregator frames contain no user, item or category id and no plaintext update float; they open only with the aggregator's key")
    func rawDataNeverLeaves() async throws {
        let federation = try await Federation(agents: ["region-1"], enrolled: ["region-1"])
        // Shoppers with large random ids, so that any leak of them would be recognisable in the bytes.
        var random = SplitMix64(seed: 99)
        var rows: [String] = [], users: [UInt64] = [], items: [UInt64] = [], categories: [UInt64] = []
        let categoryPool = (0..<15).map { _ in 10_000_000 + random.next() % 80_000_000 }
        for _ in 0..<25 {
            let user = 100_000_000 + random.next() % 800_000_000
            users.append(user)
            for step in 0..<12 {
                let item = 1_000_000_000 + random.next() % 3_000_000_000
                let category = categoryPool[Int(random.next() % 15)]
                items.append(item)
                categories.append(category)
                rows.append("\(user),\(item),\(category),\(["pv", "cart", "fav", "buy"][Int(random.next() % 4)]),\(1_511_600_000 + step * 600)")
            }
        }
        try rows.joined(separator: "\n").write(to: federation.directory.appendingPathComponent("shoppers.csv"),
                                               atomically: true, encoding: .utf8)
        let catalog = try federation.start("aggregator", ["catalog", "build", "--categories", "1024", "--out", "catalog.txt",
                                                          "shoppers.csv"])
        #expect(await catalog.waitForExit(seconds: 30) == 0)
        let relayPort = federation.port + 7
        try federation.appendLines("data_directory: data/region-1\ncatalog: catalog.txt\n", to: "region-1.yaml")
        let importer = try federation.start("edge-agent", ["import", "--config", "region-1.yaml", "shoppers.csv"])
        #expect(await importer.waitForExit(seconds: 30) == 0, "\(importer.output)")
        try federation.appendLines("""
            state_directory: state
            rounds: {min_agents: 1, timeout_seconds: 30, sampling_rate: 1.0, clip_norm: 1.0, sequence_length: 20}
            server_optimizer: {kind: sgd, learning_rate: 1.0}

            """, to: "aggregator.yaml")
        // The agent talks to the relay; announcements come straight from the aggregator's PUB.
        let config = federation.path("region-1.yaml")
        let text = try String(contentsOfFile: config, encoding: .utf8)
            .replacingOccurrences(of: "aggregator: tcp://127.0.0.1:\(federation.port)\n",
                                  with: "aggregator: tcp://127.0.0.1:\(relayPort)\n")
        try text.write(toFile: config, atomically: true, encoding: .utf8)

        let aggregatorIdentity = try KeyDirectory(path: federation.path("keys/aggregator")).readIdentity()
        let agentIdentity = try KeyDirectory(path: federation.path("keys/region-1")).readIdentity()
        let relay = try Relay(listen: "tcp://127.0.0.1:\(relayPort)", upstream: "tcp://127.0.0.1:\(federation.port)",
                              aggregator: aggregatorIdentity, agent: agentIdentity)
        defer { relay.close() }
        let forwarding = Task { await relay.run() }
        defer { forwarding.cancel() }

        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml", "--rounds", "1"])
        let agent = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        defer { agent.terminate() }
        #expect(await aggregator.waitForExit(seconds: 120) == 0, "\(aggregator.output)\n\(agent.output)")
        #expect(aggregator.lines(startingWith: "round 1").first?.contains("accepted 1") == true, "\(aggregator.output)")

        let sent = relay.recorded.filter { $0.fromAgent }
        let updateFrames = sent.filter { (try? WireHeader(decoding: $0.frames[0]).kind) == .update }
        #expect(updateFrames.count == 1)
        let bytes = sent.flatMap { $0.frames.flatMap { $0 } }
        #expect(bytes.count > 100_000)

        // No identifier, as text or as a little-endian integer. Every 4- and 8-byte window of the capture
        // is indexed once; longer patterns are found by their first 8 bytes, then compared whole.
        var windows8: [UInt64: [Int]] = [:], windows4 = Set<UInt32>()
        bytes.withUnsafeBytes { raw in
            for start in 0..<(raw.count - 8) {
                windows8[raw.loadUnaligned(fromByteOffset: start, as: UInt64.self), default: []].append(start)
                windows4.insert(raw.loadUnaligned(fromByteOffset: start, as: UInt32.self))
            }
        }
        func contains(_ pattern: [UInt8]) -> Bool {
            if pattern.count == 4 { return windows4.contains(pattern.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }) }
            precondition(pattern.count >= 8)
            let key = pattern.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            return (windows8[key] ?? []).contains { start in
                start + pattern.count <= bytes.count && Array(bytes[start..<(start + pattern.count)]) == pattern
            }
        }
        // Text (≥ 9 bytes) and u64 forms cannot occur in ciphertext by chance (≤ 2⁻⁶⁴ per position). A
        // given 4-byte u32 pattern can: in N random bytes it appears with probability ≈ N / 2³², so over
        // K ids about λ = K·N / 2³² chance hits are expected (≈ 0.1 here). A leak shows up as hundreds of
        // hits (every id); chance as a handful. The bound λ + 6√λ + 4 is exceeded by chance with
        // probability < 10⁻⁶ at this λ.
        var u32Hits: [UInt64] = [], u32Checked = 0
        for id in Set(users + items + categories) {
            #expect(!contains(Array(String(id).utf8)), "id \(id) appears as text")
            #expect(!contains(withUnsafeBytes(of: id.littleEndian, Array.init)), "id \(id) appears as u64")
            if id <= UInt64(UInt32.max) {
                u32Checked += 1
                if contains(withUnsafeBytes(of: UInt32(id).littleEndian, Array.init)) { u32Hits.append(id) }
            }
        }
        let chance = Double(u32Checked) * Double(bytes.count) / 4_294_967_296
        #expect(Double(u32Hits.count) <= chance + 6 * chance.squareRoot() + 4,
                "\(u32Hits.count) of \(u32Checked) ids appear as u32 (chance alone: \(chance)): \(u32Hits)")

        // The update the agent sent, recomputed independently (q = 1, no noise, from the initial model).
        let model = try ModelFile.read(from: federation.path("state/models/model-v0.fdlm"))
        let store = try EventStore(path: federation.path("data/region-1/events.sqlite"))
        let catalogFile = try CategoryCatalog.read(from: federation.path("catalog.txt"))
        let data = try StoreRoundWorker.read(store: store, catalog: catalogFile, sequenceLength: 20, evaluationUsers: 0) {
            $0.count >= 2
        }
        let expected = LocalTraining(hyperparameters: RoundHyperparameters(
            samplingRate: 1, clipNorm: 1, noiseMultiplier: 0, learningRate: 1, localSteps: 1, sequenceLength: 20),
            threads: 1).run(global: model.parameters, users: data.training).deltaSum
        // No two consecutive non-zero update floats appear in the clear.
        var checked = 0
        for index in stride(from: 0, to: expected.count - 1, by: 97) where expected[index] != 0 && expected[index + 1] != 0 {
            let window = Array(expected[index...(index + 1)]).withUnsafeBytes { Array($0) }
            #expect(!contains(window), "update floats \(index), \(index + 1) appear in the clear")
            checked += 1
        }
        #expect(checked > 50)

        // The captured update opens with the aggregator's key — to exactly that update — and with no other.
        let envelope = try #require(updateFrames.first?.frames[1])
        let opener = EnvelopeOpener(recipient: aggregatorIdentity.box, senders: ["region-1": agentIdentity.signing.publicKey])
        let opened = try opener.open(envelope, expecting: .init(senderID: "region-1", kind: MessageKind.update.rawValue))
        let update = try UpdateSubmission(decoding: opened.payload)
        let worst = zip(update.values, expected).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst < 1e-6, "the sealed update is the recomputed one (max difference \(worst))")
        let stranger = EnvelopeOpener(recipient: NodeIdentity().box, senders: ["region-1": agentIdentity.signing.publicKey])
        #expect(throws: EnvelopeError.wrongRecipient) { try stranger.open(envelope, expecting: .init()) }
        let impostor = EnvelopeOpener(recipient: aggregatorIdentity.box, senders: ["region-1": NodeIdentity().signing.publicKey])
        #expect(throws: EnvelopeError.badSignature) { try impostor.open(envelope, expecting: .init()) }
    }
}

/// A recording man-in-the-middle with both parties' CURVE keys: ROUTER towards the agent (as the
/// aggregator), DEALER towards the aggregator (as the agent).
final class Relay: Sendable {
    struct Frames: Sendable {
        let fromAgent: Bool
        let frames: [[UInt8]]
    }

    private let context: ZMQContext
    private let zap: ZAPAuthenticator
    private let front: ZMQChannel
    private let back: ZMQChannel
    private let log = Mutex<[Frames]>([])
    /// The agent's routing id at the front ROUTER (one agent).
    private let routingID = Mutex<[UInt8]?>(nil)

    init(listen: String, upstream: String, aggregator: NodeIdentity, agent: NodeIdentity) throws {
        context = try ZMQContext()
        zap = try ZAPAuthenticator(context: context, allowList: [agent.box.publicKey: "region-1"])
        var frontOptions = ZMQSocketOptions()
        frontOptions.curve = .server(keys: aggregator.box)
        front = try ZMQChannel(context: context, configuration: .init(kind: .router, options: frontOptions, bind: [listen]))
        var backOptions = ZMQSocketOptions()
        backOptions.curve = .client(keys: agent.box, serverKey: aggregator.box.publicKey)
        back = try ZMQChannel(context: context, configuration: .init(kind: .dealer, options: backOptions, connect: [upstream]))
    }

    var recorded: [Frames] { log.withLock { $0 } }

    /// Forwards both ways until cancelled, recording every frame after the routing id.
    func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await message in self.front.messages {
                        let frames = message.frames
                        self.routingID.withLock { $0 = frames.first }
                        self.log.withLock { $0.append(Frames(fromAgent: true, frames: Array(frames.dropFirst()))) }
                        try await self.back.send(Array(frames.dropFirst()))
                    }
                } catch {}
            }
            group.addTask {
                do {
                    for try await message in self.back.messages {
                        self.log.withLock { $0.append(Frames(fromAgent: false, frames: message.frames)) }
                        guard let routing = self.routingID.withLock({ $0 }) else { continue }
                        try await self.front.send([routing] + message.frames)
                    }
                } catch {}
            }
        }
    }

    func close() {
        front.close()
        back.close()
        zap.close()
    }
}
