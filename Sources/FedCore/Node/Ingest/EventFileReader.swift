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
        progress.begin(label ?? "reading \(URL(fileURLWithPath: path).lastPathComponent)", total: size, unit: .bytes)
        defer { progress.stop() }                    // after a throw: end the bar's line, claim nothing done
        let summary = try read(progress: { read, _ in progress.set(read) }, handle: handle)
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
            guard !row.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) else { return }
            let text = Substring(decoding: row, as: UTF8.self)
            do {
                batch.append(try EventParser.parse(text, format: format, line: line))
                summary.accepted += 1
                if batch.count >= batchSize {
                    try handle(batch)
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
        if !batch.isEmpty { try handle(batch) }
        if summary.accepted == 0 && summary.rejected > 0 {
            throw ReadError.noValidRows(path: path, rejected: summary.rejected, first: summary.errors.first)
        }
        return summary
    }
}
