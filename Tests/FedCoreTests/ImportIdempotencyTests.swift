@testable import FedLogic
@testable import FedNode
import Foundation
import Testing

/// Import is idempotent: each batch of events is stored in one transaction with the number of the
/// file's lines it covers, so re-importing a file adds nothing, an interrupted import resumes after the
/// last line stored, and a file that grew adds only its new lines.
@Suite("Idempotent import")
struct ImportIdempotencyTests {
    static func rows(_ range: Range<Int>) -> String {
        range.map { "\(1_000 + $0 % 37),\($0),\(4_242 + $0 % 5),pv,\(1_511_600_000 + $0)\n" }.joined()
    }

    static func importFile(_ path: String, into store: EventStore, failAfterBatches: Int? = nil) throws -> Int {
        var reader = EventFileReader(path: path, format: .taobao)
        reader.batchSize = 100
        var progress = try reader.resumePoint(in: store)
        var batches = 0
        return try reader.read(skippingLines: progress.lines) { batch, through in
            if let failAfterBatches, batches == failAfterBatches { throw CancellationError() }  // a crash mid-import
            progress.lines = through
            try store.append(batch, progress: progress)
            batches += 1
        }.accepted
    }

    @Test("The same file ten times stores its rows once; an import killed after 3 batches resumes to exactly the file's rows; appended lines are added once")
    func importIsIdempotent() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-import-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("day.csv").path
        try (Self.rows(0..<950) + "not,a,row\n" + Self.rows(950..<1_000)).write(toFile: path, atomically: true, encoding: .utf8)

        let store = try EventStore(path: directory.appendingPathComponent("events.sqlite").path)
        #expect(throws: CancellationError.self) { _ = try Self.importFile(path, into: store, failAfterBatches: 3) }
        #expect(try store.eventCount() == 300, "three batches committed with their progress")
        #expect(try Self.importFile(path, into: store) == 700, "the rest, after the last line stored")
        for _ in 0..<9 { #expect(try Self.importFile(path, into: store) == 0) }
        #expect(try store.eventCount() == 1_000)
        // Every row exactly once: the items are 0..<1000.
        var items: [UInt64] = []
        try store.forEachRecentSequence(limit: 1_000) { _, events in items += events.map(\.item) }
        #expect(items.sorted() == (0..<1_000).map(UInt64.init))

        // The file grows: only the new lines are added.
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(Self.rows(1_000..<1_200).utf8))
        try handle.close()
        #expect(try Self.importFile(path, into: store) == 200)
        #expect(try store.eventCount() == 1_200)

        // Control: without the recorded progress (plain appends) the same file doubles the store.
        let plain = try EventStore(path: directory.appendingPathComponent("plain.sqlite").path)
        for _ in 0..<2 { try EventFileReader(path: path, format: .taobao).read { try plain.append($0) } }
        #expect(try plain.eventCount() == 2_400)
    }
}
