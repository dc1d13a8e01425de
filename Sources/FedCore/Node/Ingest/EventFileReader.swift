import FedIO
package import FedLogic
import FedModel
import Foundation

/// Reads a file of events in large chunks, line by line, handing good events to the caller in
/// batches and keeping every bad row's line number and reason.
package struct EventFileReader: Sendable {
    package struct Summary: Sendable, Equatable {
        package var accepted = 0
        package var rejected = 0
        /// The first rejected rows (at most ``EventFileReader/keptErrors``), for the report.
        package var errors: [EventParseError] = []
        package var bytes = 0
    }

    package enum ReadError: Error, CustomStringConvertible, Sendable {
        case unreadable(path: String, reason: String)
        /// Every non-empty row was refused: almost certainly the wrong format or file.
        case noValidRows(path: String, rejected: Int, first: EventParseError?)

        package var description: String {
            switch self {
            case let .unreadable(path, reason): "cannot read \(path): \(reason)"
            case let .noValidRows(path, rejected, first):
                "\(path): none of its \(rejected) rows is a valid event\(first.map { " (first: \($0))" } ?? ""); "
                    + "check --format (taobao or jsonl)"
            }
        }
    }

    package static let keptErrors = 20
    package let path: String
    package let format: EventFormat
    /// Events per call of the batch handler.
    package var batchSize = 10_000

    package init(path: String, format: EventFormat) {
        self.path = path
        self.format = format
    }

    /// The file's size in bytes; 0 when it cannot be read (``read(progress:handle:)`` then says why).
    package var size: Int { (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0 }

    /// Reads the whole file, showing the bytes read as a phase of `progress`.
    ///
    /// - Parameters:
    ///   - progress: shows a phase named `label` (default: "reading" and the file's name) counting bytes.
    ///   - handle: receives batches of parsed events, in file order; a throw stops the read.
    /// - Throws: ``ReadError`` when the file cannot be read or holds no valid row; rethrows `handle`'s errors.
    @discardableResult
    package func read(progress: ProgressReporter, label: String? = nil,
                      handle: ([BehaviorEvent]) throws -> Void) throws -> Summary {
        try read(progress: progress, label: label, skippingLines: 0) { batch, _ in if !batch.isEmpty { try handle(batch) } }
    }

    /// ``read(progress:skippingLines:handle:)`` with a progress bar.
    package func read(progress: ProgressReporter, label: String? = nil, skippingLines skip: Int,
                      handle: ([BehaviorEvent], _ throughLine: Int) throws -> Void) throws -> Summary {
        progress.begin(label ?? "reading \(URL(fileURLWithPath: path).lastPathComponent)", total: size, unit: .bytes)
        defer { progress.stop() }                    // after a throw: end the bar's line, claim nothing done
        let summary = try read(progress: { read, _ in progress.set(read) }, skippingLines: skip, handle: handle)
        progress.finish()
        return summary
    }

    /// Reads the whole file.
    ///
    /// - Parameters:
    ///   - progress: called after each chunk with bytes read and the file size.
    ///   - handle: receives batches of parsed events, in file order; a throw stops the read.
    /// - Throws: ``ReadError`` when the file cannot be read or holds no valid row; rethrows `handle`'s errors.
    @discardableResult
    package func read(progress: (Int, Int) -> Void = { _, _ in },
                      handle: ([BehaviorEvent]) throws -> Void) throws -> Summary {
        try read(progress: progress, skippingLines: 0) { batch, _ in if !batch.isEmpty { try handle(batch) } }
    }

    /// An identity for resuming an import: BLAKE2b-256 of the file's first `prefixBytes` bytes.
    package func sourceIdentity(prefixBytes: Int) throws -> String {
        guard let file = FileHandle(forReadingAtPath: path) else {
            throw ReadError.unreadable(path: path, reason: "no such file or no permission")
        }
        defer { try? file.close() }
        let head: Data
        do {
            head = try file.read(upToCount: prefixBytes) ?? Data()
        } catch {
            throw ReadError.unreadable(path: path, reason: error.localizedDescription)
        }
        return "\(format.rawValue):\(head.count):" + Digest.blake2b256([UInt8](head)).map { String(format: "%02x", $0) }.joined()
    }

    /// Files are recognised by their first MiB (all of them when smaller).
    package static let identityPrefixBytes = 1 << 20

    /// Where an import of this file into `store` starts: a file imported before — the same, or grown
    /// since (its first bytes as they were then) — resumes after the lines stored; any other starts at
    /// line 0 under a new identity. Files whose first MiB is the same are taken for the same file.
    package func resumePoint(in store: EventStore) throws -> EventStore.ImportProgress {
        let size = self.size
        // Every file imported before at full size shares the 1 MiB prefix length: hash each length once.
        var identities: [Int: String] = [:]
        func identity(_ prefixBytes: Int) throws -> String {
            if let known = identities[prefixBytes] { return known }
            let computed = try sourceIdentity(prefixBytes: prefixBytes)
            identities[prefixBytes] = computed
            return computed
        }
        for known in try store.importSources().sorted(by: { $0.prefixBytes > $1.prefixBytes })
            where known.prefixBytes <= size && known.source.hasPrefix(format.rawValue + ":") {
            if try identity(known.prefixBytes) == known.source {
                return EventStore.ImportProgress(source: known.source, path: path, prefixBytes: known.prefixBytes,
                                                 lines: known.lines)
            }
        }
        let prefix = min(size, Self.identityPrefixBytes)
        return EventStore.ImportProgress(source: try identity(prefix), path: path, prefixBytes: prefix, lines: 0)
    }

    /// Reads the file after its first `skip` lines (those an interrupted import already stored). `handle`
    /// receives each batch with the number of lines read through it — after the last batch, the
    /// file's line count, also when that batch is empty — so a caller can commit events and progress
    /// together.
    @discardableResult
    package func read(progress: (Int, Int) -> Void = { _, _ in }, skippingLines skip: Int,
                      handle: ([BehaviorEvent], _ throughLine: Int) throws -> Void) throws -> Summary {
        guard let file = FileHandle(forReadingAtPath: path) else {
            throw ReadError.unreadable(path: path, reason: "no such file or no permission")
        }
        defer { try? file.close() }
        let size = self.size
        var summary = Summary()
        var pending: [UInt8] = []
        var batch: [BehaviorEvent] = []
        batch.reserveCapacity(batchSize)
        var line = 0
        func consume(_ row: ArraySlice<UInt8>) throws {
            line += 1
            guard line > skip else { return }
            guard !row.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) else { return }
            let text = Substring(decoding: row, as: UTF8.self)
            do {
                batch.append(try EventParser.parse(text, format: format, line: line))
                summary.accepted += 1
                if batch.count >= batchSize {
                    try handle(batch, line)
                    batch.removeAll(keepingCapacity: true)
                }
            } catch let error as EventParseError {
                summary.rejected += 1
                if summary.errors.count < Self.keptErrors { summary.errors.append(error) }
            }
        }
        while true {
            let chunk: Data
            do {
                chunk = try file.read(upToCount: 1 << 20) ?? Data()
            } catch {
                throw ReadError.unreadable(path: path, reason: error.localizedDescription)
            }
            if chunk.isEmpty { break }
            summary.bytes += chunk.count
            pending.append(contentsOf: chunk)
            var start = 0
            while let newline = pending[start...].firstIndex(of: 0x0A) {
                try consume(pending[start..<newline])
                start = newline + 1
            }
            pending.removeFirst(start)
            progress(summary.bytes, size)
        }
        if !pending.isEmpty { try consume(pending[...]) }
        if !batch.isEmpty || line > skip { try handle(batch, line) }
        if summary.accepted == 0 && summary.rejected > 0 {
            throw ReadError.noValidRows(path: path, rejected: summary.rejected, first: summary.errors.first)
        }
        return summary
    }
}
