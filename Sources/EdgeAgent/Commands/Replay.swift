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
            as the agent takes them). The agent admits only producers it enrolled (clients.producers): give \
            this client's key directory (edge-agent keygen) and the agent's identity.public. Without them the \
            connection is plain, which only an agent with insecure_loopback: true accepts, on loopback.

            Each message carries its rows' offsets in a stream named after the file's contents (--stream \
            to choose the name): the agent stores each row of a stream once, so replaying a file again — \
            after either side crashed, or on purpose — adds only the rows it has not stored yet. \
            --no-stream sends plain messages, which the agent stores as they come.

            Example:
              edge-agent keygen --out keys/shop        # once; the agent's operator enrols keys/shop/identity.public
              edge-agent replay --endpoint tcp://127.0.0.1:7710 --key keys/shop \
                --server-key keys/region-1/identity.public day9.csv
            """
    )

    @Option(name: .long, help: "The agent's ingest endpoint, e.g. tcp://127.0.0.1:7710.")
    var endpoint: String

    @Option(name: .long, help: "This producer's key directory (edge-agent keygen), enrolled under the agent's clients.producers.")
    var key: String?

    @Option(name: .long, help: "The agent's public identity (its key_directory/identity.public).")
    var serverKey: String?

    @Option(name: .long, help: "Rows per message.")
    var batch = 100

    @Option(name: .long, help: "Rows per second (0 = unlimited).")
    var rate = 0

    @Option(name: .long, help: "The stream name (letters, digits, ._:/-); default: replay:<hash of the file>.")
    var stream: String?

    @Flag(name: .long, help: "Send rows without stream offsets: a second replay stores them again.")
    var noStream = false

    @Argument(help: "The file to replay.")
    var file: String

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard rate >= 0 else { throw ValidationError("--rate must be ≥ 0") }
        if let stream {
            guard !noStream else { throw ValidationError("--stream and --no-stream exclude each other") }
            do {
                _ = try IngestStreamHeader.parse(IngestStreamHeader(stream: stream, offset: 0).frame)
            } catch {
                throw ValidationError("--stream: \(error)")
            }
        }
        guard (key == nil) == (serverKey == nil) else {
            throw ValidationError("--key and --server-key go together: this client's keys and the agent's public key")
        }
    }

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
            throw ValidationError("cannot read \(file) as UTF-8 text")
        }
        let rows = text.split(separator: "\n", omittingEmptySubsequences: true)
        let streamName = noStream ? nil : stream ?? "replay:" + Digest.hex(Digest.blake2b256([UInt8](data)).prefix(12))
        let context = try ZMQContext()
        let keys = try key.map { try KeyDirectory(path: $0).readIdentity() }
        let server = try serverKey.map { try KeyDirectory.readPublicIdentity(file: $0).box }
        let channel = try await DoorClient.connect(.push, to: endpoint, keys: keys, serverKey: server, context: context)
        defer { channel.close() }
        let started = ContinuousClock.now
        var sent = 0
        for start in stride(from: 0, to: rows.count, by: batch) {
            let chunk = rows[start..<min(start + batch, rows.count)].joined(separator: "\n")
            if let streamName {
                let frames: [[UInt8]] = [IngestStreamHeader(stream: streamName, offset: Int64(start)).frame, Array(chunk.utf8)]
                try await channel.send(frames)
            } else {
                try await channel.send([Array(chunk.utf8)])
            }
            sent += min(batch, rows.count - start)
            if rate > 0 {
                let due = started + .milliseconds(Int64(sent) * 1000 / Int64(rate))
                if due > .now { try await Task.sleep(until: due, clock: .continuous) }
            }
        }
        // Let libzmq flush before closing (linger is 0).
        try await Task.sleep(for: .milliseconds(500))
        FileHandle.standardError.write(Data("sent \(sent) rows to \(endpoint)\(streamName.map { " as stream \($0)" } ?? "")\n".utf8))
    }
}
