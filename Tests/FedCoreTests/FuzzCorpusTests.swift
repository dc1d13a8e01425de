@testable import FedIO
@testable import FedModel
@testable import FedNode
import Foundation
import FuzzHarnesses
import Testing

/// The regression pass of the fuzzing harnesses (Tests/Fuzz, `scripts/fuzz`): every input of the
/// committed corpus — the seeds below and what libFuzzer found interesting — runs through the same
/// harness code the fuzzer runs, in every CI run. A crash or a broken property found once stays fixed.
/// `FEDDRIFT_WRITE_FUZZ_SEEDS=1 swift test --filter FuzzCorpusTests` rewrites the seed files.
@Suite("Fuzzing harnesses: corpus regression")
struct FuzzCorpusTests {
    private static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    private static let corpus = root.appendingPathComponent("Fuzz/Corpus")

    /// Valid inputs of each harness: the golden wire fixtures, the example configurations, event rows,
    /// a small model file, envelopes in each mode.
    static func seeds() throws -> [FuzzHarness: [(name: String, bytes: [UInt8])]] {
        var seeds: [FuzzHarness: [(name: String, bytes: [UInt8])]] = [:]
        let wire = root.appendingPathComponent("FedCoreTests/Fixtures/wire")
        for file in try FileManager.default.contentsOfDirectory(atPath: wire.path).sorted() where file.hasSuffix(".hex") {
            let name = String(file.dropLast(4))
            let text = Array(try String(contentsOf: wire.appendingPathComponent(file), encoding: .utf8).filter(\.isHexDigit))
            let body = stride(from: 0, to: text.count - 1, by: 2).compactMap { UInt8(String(text[$0...$0 + 1]), radix: 16) }
            if let input = FuzzHarness.wireInput(name: name, body: body) { seeds[.wire, default: []].append((name, input)) }
            if name == "envelope" { seeds[.envelope, default: []].append(("refused-golden-other-keys", [0] + body)) }
        }
        seeds[.envelope, default: []] += [("seal-empty", [1]), ("seal-text", [1] + Array("a payload".utf8)),
                                           ("tamper-none", [2]), ("refused-tamper-one", [2, 0, 40, 1])]
        let configs = root.deletingLastPathComponent().appendingPathComponent("configs")
        for file in try FileManager.default.contentsOfDirectory(atPath: configs.path).sorted() where file.hasSuffix(".yaml") {
            seeds[.config, default: []].append((file, Array(try Data(contentsOf: configs.appendingPathComponent(file)))))
        }
        seeds[.csv] = [("rows", Array("1,2,3,pv,1511544070\n1,5,3,cart,1511544071\n2,9,4,buy,1511544072\n".utf8))]
        seeds[.jsonl] = [("rows", Array("""
            {"user_id": 1, "item_id": 2, "category_id": 3, "behavior_type": "pv", "timestamp": 1511544070}
            {"user_id": "2", "item_id": "5", "category_id": "3", "behavior_type": "fav", "timestamp": 1511544071}

            """.utf8))]
        let tiny = LSTMParameters<Float>(shape: LSTMShape(categories: 4, embedding: 2, hidden: 2), seed: 1)
        seeds[.model] = [("tiny", ModelFile.encode(tiny, modelVersion: 3))]
        return seeds
    }

    @Test("Every seed is accepted by its harness (the harnesses reach the real parsers), a tampered envelope and garbage are refused")
    func controls() throws {
        let seeds = try Self.seeds()
        for harness in FuzzHarness.allCases {
            let inputs = try #require(seeds[harness], "no seeds for \(harness)")
            for (name, bytes) in inputs {
                let expected: FuzzHarness.Outcome = name.hasPrefix("refused-") ? .refused : .accepted
                #expect(harness.run(bytes) == expected, "\(harness) seed \(name)")
            }
            // Control: the same harness refuses what is not its format.
            #expect(harness.run(Array("\u{0}\u{2}\u{3}not an input of any format\u{0}".utf8)) == .refused,
                    "\(harness) accepted garbage")
        }
    }

    @Test("Every committed corpus input runs through its harness without a crash or a broken property")
    func replay() throws {
        if ProcessInfo.processInfo.environment["FEDDRIFT_WRITE_FUZZ_SEEDS"] == "1" {
            for (harness, inputs) in try Self.seeds() {
                let directory = Self.corpus.appendingPathComponent(harness.rawValue)
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                for (name, bytes) in inputs {
                    try Data(bytes).write(to: directory.appendingPathComponent("seed-\(name)"))
                }
            }
        }
        for harness in FuzzHarness.allCases {
            let directory = Self.corpus.appendingPathComponent(harness.rawValue)
            let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
            #expect(!files.isEmpty, "no corpus for \(harness) in \(directory.path)")
            var accepted = 0
            for file in files {
                let bytes = Array(try Data(contentsOf: directory.appendingPathComponent(file)))
                if harness.run(bytes) == .accepted { accepted += 1 }
            }
            #expect(accepted > 0, "\(harness): none of \(files.count) corpus inputs was accepted")
        }
    }
}
