import ArgumentParser
import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import behaviour events from a file into this agent's local store.",
        discussion: """
            Formats: taobao (UserBehavior CSV: user_id,item_id,category_id,pv|fav|cart|buy,unix seconds) \
            and jsonl (one object per line with the same fields). Bad rows are skipped and reported with \
            their line numbers; a file with no valid row is an error. Events stay on this node. Progress \
            (bytes read) goes to stderr: a bar on a terminal, a line every 10 s otherwise.

            Idempotent: the store records, in the same transaction as each batch of events, how many lines \
            of the file are stored (the file is recognised by its first MiB). Importing the same file again \
            adds nothing; an interrupted import resumes after the last line stored; a file that grew adds \
            only its new lines.
            """
    )

    @Option(name: .long, help: "Input format: taobao or jsonl.")
    var format: String = "taobao"

    @Option(name: .long, help: "The agent's configuration: import into its data_directory/events.sqlite.")
    var config: String?

    @Option(name: .long, help: "The event store (SQLite) to import into, when no --config is given; created if missing.")
    var store: String = "events.sqlite"

    @Argument(help: "The file to import.")
    var file: String

    func validate() throws {
        guard EventFormat(rawValue: format) != nil else { throw ValidationError("--format must be taobao or jsonl") }
    }

    func run() throws {
        guard let format = EventFormat(rawValue: format) else { return }
        if let armed = try Failpoint.checkEnvironment() { FileHandle.standardError.write(Data((armed + "\n").utf8)) }
        var storePath = self.store
        if let config {
            let configuration = try EdgeAgentConfiguration.load(path: config)
            try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
            storePath = configuration.storePath
        }
        let store = try EventStore(path: storePath)
        let start = Date()
        let reader = EventFileReader(path: file, format: format)
        var progress = try reader.resumePoint(in: store)
        if progress.lines > 0 {
            print("\(file): its first \(progress.lines) lines were imported before; reading after them.")
        }
        let summary = try reader.read(progress: ProgressReporter(),
                                      label: "importing \(URL(fileURLWithPath: file).lastPathComponent)",
                                      skippingLines: progress.lines) { batch, through in
            progress.lines = through
            try store.append(batch, progress: progress)
            Failpoint.agentImportBatch.reach()
        }
        let seconds = max(Date().timeIntervalSince(start), 1e-3)
        print(String(format: "Imported %d events (%.0f events/s); %d rows refused.", summary.accepted,
                     Double(summary.accepted) / seconds, summary.rejected))
        for error in summary.errors { print("  refused \(error)") }
        if summary.rejected > summary.errors.count {
            print("  … and \(summary.rejected - summary.errors.count) more refused rows")
        }
        print("Store \(storePath): \(try store.eventCount()) events from \(try store.userCount()) shoppers.")
    }
}
