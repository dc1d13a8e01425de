package import FedIO
package import FedLogic
package import FedModel
import Foundation
internal import GRDB

/// A failure of the local store, with the database path and what was being done.
package struct StorageError: Error, CustomStringConvertible, Sendable {
    package let path: String
    package let operation: String
    package let reason: String
    package init(path: String, operation: String, reason: String) {
        self.path = path
        self.operation = operation
        self.reason = reason
    }
    package var description: String { "event store \(path): \(operation) failed: \(reason)" }
}

/// The agent's local store of behaviour events: SQLite in WAL mode (readers never block the writer).
///
/// A batch is acknowledged only after its transaction committed with `synchronous = FULL`, so an
/// acknowledged event survives a process crash or power loss. Events may arrive out of time order;
/// they are stored as they come and read back ordered by (timestamp, arrival).
package final class EventStore: Sendable {
    package let path: String
    private let pool: DatabasePool

    package init(path: String) throws(StorageError) {
        self.path = path
        do {
            pool = try DatabasePool(path: path, configuration: .durable)
            try Self.migrator.migrate(pool)
        } catch {
            throw StorageError(path: path, operation: "open", reason: "\(error)")
        }
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: events") { db in
            try db.create(table: "event") { table in
                table.autoIncrementedPrimaryKey("id")
                table.column("user", .integer).notNull()
                table.column("item", .integer).notNull()
                table.column("category", .integer).notNull()
                table.column("action", .integer).notNull()
                table.column("timestamp", .integer).notNull()
            }
            try db.create(index: "event_by_user_time", on: "event", columns: ["user", "timestamp", "id"])
        }
        return migrator
    }

    /// Appends `events` in one transaction; returns once they are durable.
    package func append(_ events: [BehaviorEvent]) throws(StorageError) {
        guard !events.isEmpty else { return }
        do {
            try pool.write { db in
                let insert = try db.makeStatement(
                    sql: "INSERT INTO event (user, item, category, action, timestamp) VALUES (?, ?, ?, ?, ?)")
                for event in events {
                    try insert.execute(arguments: [Int64(bitPattern: event.user), Int64(bitPattern: event.item),
                                                   Int64(bitPattern: event.category), Int(event.action.rawValue),
                                                   event.timestamp])
                }
            }
        } catch {
            throw StorageError(path: path, operation: "append \(events.count) events", reason: "\(error)")
        }
    }

    package func eventCount() throws(StorageError) -> Int {
        try read("count events") { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM event") ?? 0 }
    }

    package func userCount() throws(StorageError) -> Int {
        try read("count users") { db in try Int.fetchOne(db, sql: "SELECT COUNT(DISTINCT user) FROM event") ?? 0 }
    }

    /// Each user's most recent `limit` events, oldest first.
    package func recentSequences(limit: Int) throws(StorageError) -> [UInt64: [BehaviorEvent]] {
        var sequences: [UInt64: [BehaviorEvent]] = [:]
        try forEachRecentSequence(limit: limit) { user, events in sequences[user] = events }
        return sequences
    }

    /// Streams each user's most recent `limit` events (oldest first), one user at a time, so a round
    /// over every shopper never holds more than one shopper's raw events.
    package func forEachRecentSequence(limit: Int, _ body: (UInt64, [BehaviorEvent]) throws -> Void)
        throws(StorageError)
    {
        try read("read recent sequences") { db in
            let rows = try Row.fetchCursor(db, sql: """
                SELECT user, item, category, action, timestamp FROM (
                    SELECT *, ROW_NUMBER() OVER (PARTITION BY user ORDER BY timestamp DESC, id DESC) AS recency
                    FROM event)
                WHERE recency <= ? ORDER BY user, timestamp, id
                """, arguments: [limit])
            var current: UInt64?
            var events: [BehaviorEvent] = []
            while let row = try rows.next() {
                let user = UInt64(bitPattern: row[0] as Int64)
                if user != current, let previous = current {
                    try body(previous, events)
                    events.removeAll(keepingCapacity: true)
                }
                current = user
                let action = BehaviorEvent.Action(rawValue: UInt8(clamping: row[3] as Int)) ?? .view
                events.append(BehaviorEvent(
                    user: user, item: UInt64(bitPattern: row[1] as Int64), category: UInt64(bitPattern: row[2] as Int64),
                    action: action, timestamp: row[4]))
            }
            if let current { try body(current, events) }
        }
    }

    /// Distinct items per category over the stored events (catalog input for research data).
    package func itemsPerCategory() throws(StorageError) -> [UInt64: Int] {
        try read("count items per category") { db in
            var counts: [UInt64: Int] = [:]
            let rows = try Row.fetchCursor(db, sql: "SELECT category, COUNT(DISTINCT item) FROM event GROUP BY category")
            while let row = try rows.next() { counts[UInt64(bitPattern: row[0] as Int64)] = row[1] }
            return counts
        }
    }

    private func read<T>(_ operation: String, _ body: (Database) throws -> T) throws(StorageError) -> T {
        do {
            return try pool.read(body)
        } catch {
            throw StorageError(path: path, operation: operation, reason: "\(error)")
        }
    }
}

extension DatabaseQueue {
    /// Opens (creating if needed) a durable single-writer SQLite database at `path` and brings its schema
    /// up to date with `migrations`; failures carry the path and `what` was being opened.
    static func durable(path: String, what: String, migrations: (inout DatabaseMigrator) -> Void)
        throws(StorageError) -> DatabaseQueue
    {
        do {
            let queue = try DatabaseQueue(path: path, configuration: .durable)
            var migrator = DatabaseMigrator()
            migrations(&migrator)
            try migrator.migrate(queue)
            return queue
        } catch {
            throw StorageError(path: path, operation: "open \(what)", reason: "\(error)")
        }
    }
}

extension Configuration {
    /// FedDrift's stores: WAL journal and `synchronous = FULL`, so a committed transaction survives a
    /// process crash or power loss (a pool sets WAL itself; setting it again is harmless).
    static var durable: Configuration {
        var configuration = Configuration()
        // Another process (the running agent, or an operator's command beside it) may hold a lock
        // for a moment: wait for it instead of failing.
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        return configuration
    }
}
