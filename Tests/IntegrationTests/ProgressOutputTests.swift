import Foundation
import TestSupport
import Testing

@Suite("Progress of long commands: on stderr, plain lines when it is not a terminal", .serialized,
       .timeLimit(.minutes(2)))
struct ProgressOutputTests {
    @Test("simulate and import with stderr in a file: a final progress line per phase, stdout free of progress")
    func plainProgressOnStderr() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-progress-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        let simulate = try await Self.run("edge-agent", ["simulate", "--users", "200", "--days", "2",
                                                         "--out", "events.csv"], in: directory)
        #expect(simulate.status == 0, "\(simulate.stderr)")
        #expect(simulate.stderr.contains("simulating shoppers: 200/200 shoppers (100.0%), "), "\(simulate.stderr)")
        #expect(simulate.stderr.contains("writing events.csv: "), "\(simulate.stderr)")
        #expect(simulate.stdout.hasPrefix("Wrote events.csv and events.csv.truth.jsonl"), "\(simulate.stdout)")

        let imported = try await Self.run("edge-agent", ["import", "--store", "events.sqlite", "events.csv"],
                                          in: directory)
        #expect(imported.status == 0, "\(imported.stderr)")
        let lines = imported.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("importing events.csv: "), "\(imported.stderr)")
        #expect(lines.first?.contains("(100.0%)") == true && lines.first?.contains("done in") == true)
        #expect(imported.stdout.hasPrefix("Imported "), "\(imported.stdout)")

        for output in [simulate, imported] {
            #expect(!output.stderr.contains("\r"), "not a terminal: no redrawn bar")
            #expect(!output.stdout.contains("done in"), "no progress on stdout: \(output.stdout)")
        }
    }

    /// Runs a binary of this build with stdout and stderr in files of their own (not a terminal).
    @Test("aggregator simulate --agents: every agent's update went through the aggregator's path (sealed sizes, a close over them all, costs that add up) and what they come to at 10,000 agents")
    func roundCost() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-cost-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let json = try await Self.run("aggregator", ["simulate", "--agents", "40", "--cost-rounds", "2", "--json"], in: directory)
        #expect(json.status == 0, "\(json.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let parameters = try #require(object["parameters"] as? Int), agents = try #require(object["agents"] as? Int)
        let updateBytes = try #require(object["update_bytes"] as? Int), modelBytes = try #require(object["model_bytes"] as? Int)
        let perUpdate = try #require(object["aggregator_update_us"] as? Double)
        let round = try #require(object["aggregator_round_ms"] as? Double), close = try #require(object["close_ms"] as? Double)
        #expect(parameters == 126_576 && agents == 40)
        // A sealed update carries every parameter as float32, plus headers, a MAC and a signature.
        #expect(updateBytes > parameters * 4 && updateBytes < parameters * 4 + 4_096, "\(updateBytes)")
        #expect(modelBytes > parameters * 4 && modelBytes < parameters * 4 + 4_096, "\(modelBytes)")
        #expect(perUpdate > 0 && close > 0 && abs(round - (perUpdate * 40 / 1000 + close)) < close + 5, "\(object)")
        let text = try await Self.run("aggregator", ["simulate", "--agents", "40", "--cost-rounds", "1"], in: directory)
        #expect(text.status == 0 && text.stdout.contains("round cost at 40 agents, small model (126576 parameters)")
                && text.stdout.contains("at 10,000 agents (linear): "), "\(text.stdout) \(text.stderr)")
        let refused = try await Self.run("aggregator", ["simulate", "--agents", "1"], in: directory)
        #expect(refused.status != 0 && refused.stderr.contains("--agents must be between 2 and 20000"), "\(refused.stderr)")
    }

    private static func run(_ binary: String, _ arguments: [String],
                            in directory: URL) async throws -> (status: Int32, stdout: String, stderr: String) {
        let out = directory.appendingPathComponent("\(binary).stdout")
        let err = directory.appendingPathComponent("\(binary).stderr")
        for file in [out, err] { try Data().write(to: file) }
        let stdout = try FileHandle(forWritingTo: out), stderr = try FileHandle(forWritingTo: err)
        defer { try? stdout.close(); try? stderr.close() }
        let process = Process()
        process.executableURL = Binaries.url(binary)
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        let deadline = ContinuousClock.now + .seconds(90)
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        let timedOut = process.isRunning
        if timedOut {
            process.terminate()
            while process.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        }
        return (timedOut ? -1 : process.terminationStatus,
                String(decoding: try Data(contentsOf: out), as: UTF8.self),
                String(decoding: try Data(contentsOf: err), as: UTF8.self))
    }
}
