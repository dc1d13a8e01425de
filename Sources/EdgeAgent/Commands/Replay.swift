import ArgumentParser
import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation

struct Replay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send the events of a file to a running agent's live ingest socket (PUSH → its PULL).",
        discussion: """
            For testing and demos: the rows go unchanged (Taobao CSV or JSONL lines, as the agent's \
            ingest_format expects), in messages of --batch rows, at most --rate rows per second (0: as fast \
            as the agent takes them).
            """
    )

    @Option(name: .long, help: "The agent's ingest endpoint, e.g. tcp://127.0.0.1:7710.")
    var endpoint: String

    @Option(name: .long, help: "Rows per message.")
    var batch = 100

    @Option(name: .long, help: "Rows per second (0 = unlimited).")
    var rate = 0

    @Argument(help: "The file to replay.")
    var file: String

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard rate >= 0 else { throw ValidationError("--rate must be ≥ 0") }
    }

    func run() async throws {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ValidationError("cannot read \(file)")
        }
        let rows = text.split(separator: "\n", omittingEmptySubsequences: true)
        let context = try ZMQContext()
        let channel = try ZMQChannel(context: context, configuration: .init(kind: .push, connect: [endpoint]))
        defer { channel.close() }
        let started = ContinuousClock.now
        var sent = 0
        for start in stride(from: 0, to: rows.count, by: batch) {
            let chunk = rows[start..<min(start + batch, rows.count)].joined(separator: "\n")
            try await channel.send([Array(chunk.utf8)])
            sent += min(batch, rows.count - start)
            if rate > 0 {
                let due = started + .milliseconds(Int64(sent) * 1000 / Int64(rate))
                if due > .now { try await Task.sleep(until: due, clock: .continuous) }
            }
        }
        // Let libzmq flush before closing (linger is 0).
        try await Task.sleep(for: .milliseconds(500))
        FileHandle.standardError.write(Data("sent \(sent) rows to \(endpoint)\n".utf8))
    }
}
