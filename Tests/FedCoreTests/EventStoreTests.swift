@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

@Suite("Event store")
struct EventStoreTests {
    private func temporaryStore() throws -> EventStore {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-store-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return try EventStore(path: directory.appendingPathComponent("events.sqlite").path)
    }

    private func event(_ user: UInt64, _ category: UInt64, at time: Int64) -> BehaviorEvent {
        BehaviorEvent(user: user, item: category * 10, category: category, action: .view, timestamp: time)
    }

    @Test("Out-of-order events come back in time order, most recent N per user")
    func recentSequences() throws {
        let store = try temporaryStore()
        try store.append([event(1, 5, at: 1_600_000_300), event(2, 7, at: 1_600_000_000), event(1, 3, at: 1_600_000_100)])
        try store.append([event(1, 4, at: 1_600_000_200), event(1, 9, at: 1_600_000_400)])
        #expect(try store.eventCount() == 5 && store.userCount() == 2)
        let sequences = try store.recentSequences(limit: 3)
        #expect(sequences[1]?.map(\.category) == [4, 5, 9])
        #expect(sequences[2]?.map(\.category) == [7])
    }

    @Test("A stream's rows are stored once however they are re-sent: whole messages again, overlapping ones, other batch sizes; streams and producers are apart")
    func streamOffsets() throws {
        let store = try temporaryStore()
        let rows = (0..<10).map { (row: $0, event: event(UInt64($0 % 3), UInt64($0), at: 1_600_000_000 + Int64($0))) }
        func send(_ range: Range<Int>, producer: String = "shop", stream: String = "s") throws -> EventStore.StreamAppend {
            // The message's valid rows, indexed within it; row 4 of the stream is refused (not among the events).
            let events = rows[range].filter { $0.row != 4 }.map { (row: $0.row - range.lowerBound, event: $0.event) }
            return try store.append(events, at: .init(producer: producer, stream: stream, first: Int64(range.lowerBound)),
                                    rows: range.count)
        }
        #expect(try send(0..<3).skippedRows == 0)
        #expect(try send(0..<3).skippedRows == 3, "the same message again")
        let overlap = try send(2..<6)
        #expect(overlap.skippedRows == 1 && overlap.ids?.count == 2, "rows 3 and 5 new; row 4 refused")
        #expect(try send(0..<10).skippedRows == 6)
        #expect(try store.eventCount() == 9, "every valid row once")
        #expect(try send(0..<10, producer: "other").skippedRows == 0, "another producer's stream of the same name")
        #expect(try send(0..<2, stream: "t").skippedRows == 0)
        #expect(try store.eventCount() == 9 + 9 + 2)
        #expect(try store.streamPositions().map { "\($0.producer)/\($0.stream)=\($0.first)" } == ["other/s=10", "shop/s=10", "shop/t=2"])
    }

    @Test("Stream headers parse only in their one form")
    func streamHeaders() throws {
        #expect(try IngestStreamHeader.parse(Array("#stream replay:ab12 42".utf8)) == IngestStreamHeader(stream: "replay:ab12", offset: 42))
        let header = IngestStreamHeader(stream: "kafka/orders.3", offset: 7)
        #expect(try IngestStreamHeader.parse(header.frame) == header)
        for bad in ["#stream", "#stream a", "#stream a -1", "#stream a 1 2", "#stream  a 1", "#stream a b", "#strem a 1",
                    "#stream a\u{e9} 1", "#stream \(String(repeating: "x", count: 201)) 1", "#stream a 99999999999999999999"] {
            #expect(throws: IngestStreamHeader.Invalid.self, "\(bad)") { try IngestStreamHeader.parse(Array(bad.utf8)) }
        }
        #expect(IngestStreamHeader.isHeader(Array("#x".utf8)) && !IngestStreamHeader.isHeader(Array("{\"a\":1}".utf8)))
    }

    @Test("Acknowledged events survive reopening the store")
    func durable() throws {
        let store = try temporaryStore()
        try store.append((0..<1_000).map { event(UInt64($0 % 10), UInt64($0), at: 1_600_000_000 + Int64($0)) })
        let reopened = try EventStore(path: store.path)
        #expect(try reopened.eventCount() == 1_000)
        #expect(try reopened.recentSequences(limit: 1_000).values.map(\.count).reduce(0, +) == 1_000)
    }

    @Test("A path that cannot hold a database fails with the path in the message")
    func badPath() {
        let error = #expect(throws: StorageError.self) { _ = try EventStore(path: "/nonexistent-dir/events.sqlite") }
        #expect(error?.description.contains("/nonexistent-dir/events.sqlite") == true)
    }
}
