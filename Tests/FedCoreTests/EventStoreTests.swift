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
