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
