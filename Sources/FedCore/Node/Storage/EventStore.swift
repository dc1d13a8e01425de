import FedIO
package import FedLogic
import FedModel
import Foundation
internal import GRDB
import Synchronization

/// The agent's local store of behaviour events: SQLite in WAL mode (readers never block the writer).
///
/// A batch is acknowledged only after its transaction committed with `synchronous = FULL`, so an
/// acknowledged event survives a process crash or power loss. Events may arrive out of time order;
/// they are stored as they come and read back ordered by (timestamp, arrival).
///
/// Beside it, `events.sqlite.highwater` records the highest event id it has held (``HighWaterMark``): a
/// store found holding less — deleted, emptied, replaced by an older copy — is refused at open instead
/// of training and scoring on nothing. The mark is raised at most once a second while events arrive,
/// and when the store is closed.
package final class EventStore: Sendable {
    package let path: String
    private let pool: DatabasePool
    private let mark: HighWaterMark
    /// The highest id stored by this process and the mark last written.
    private let marked: Mutex<(stored: Int64, written: Int64, at: ContinuousClock.Instant)>

    package init(path: String) throws(StorageError) {
        self.path = path
        do {
            pool = try DatabasePool.durable(path: path, what: "event store", migrator: Self.migrator)
        }
        mark = HighWaterMark(database: path, what: "event store")
        let last: Int64
        do {
            // AUTOINCREMENT's sequence, not MAX(id): a shard that hands a partition's shoppers over deletes
            // their events (``forgetStream(producer:stream:)``), which may lower MAX(id) but never the sequence.
            last = try pool.read { db in
                max(try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM event") ?? 0,
                    try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'event'") ?? 0)
            }
        } catch {
            throw StorageError(path: path, operation: "read the last event id", reason: "\(error)")
        }
        try mark.check(current: last)
        marked = Mutex((last, mark.recorded(), .now))
    }

    deinit { try? raiseMark(force: true) }

    /// Raises the high-water mark to the highest id stored: at most once a second unless `force`.
    private func raiseMark(force: Bool) throws(StorageError) {
        let due = marked.withLock { state -> Int64? in
            guard state.stored > state.written, force || ContinuousClock.now - state.at >= .seconds(1) else { return nil }
            (state.written, state.at) = (state.stored, .now)
            return state.stored
        }
        if let due { try mark.raise(to: due) }
    }

    /// Notes ids just stored and raises the mark when due.
    private func stored(_ ids: ClosedRange<Int64>?) throws(StorageError) -> ClosedRange<Int64>? {
        guard let ids else { return nil }
        marked.withLock { $0.stored = max($0.stored, ids.upperBound) }
        try raiseMark(force: false)
        return ids
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
        migrator.registerMigration("v2: import progress") { db in
            // Per imported file (``ImportSource``): the lines whose events are stored, committed with them.
            try db.create(table: "import_source") { table in
                table.primaryKey("id", .text)
                table.column("path", .text).notNull()
                table.column("prefix_bytes", .integer).notNull()
                table.column("lines", .integer).notNull()
                table.column("updated_at", .integer).notNull()
            }
        }
        migrator.registerMigration("v3: ingest streams") { db in
            // Per producer and stream (``StreamPosition``): the next offset not yet stored, committed with
            // the events, so a producer that re-sends after a crash adds nothing twice.
            try db.create(table: "ingest_stream") { table in
                table.column("producer", .text).notNull()
                table.column("stream", .text).notNull()
                table.column("next_offset", .integer).notNull()
                table.column("updated_at", .integer).notNull()
                table.primaryKey(["producer", "stream"])
            }
        }
        migrator.registerMigration("v4: stream shoppers") { db in
            // Per Kafka partition this store holds (a shard's share of a region): the shoppers whose events came
            // from it, so that a partition handed to another shard takes its shoppers' events with it.
            try db.create(table: "stream_user") { table in
                table.column("producer", .text).notNull()
                table.column("stream", .text).notNull()
                table.column("user", .integer).notNull()
                table.primaryKey(["producer", "stream", "user"])
            }
        }
        return migrator
    }

    /// Where a live-ingest message sits in its producer's stream: its rows have offsets `first`,
    /// `first + 1`, … (every row, refused ones included), like a Kafka partition's.
    package struct StreamPosition: Sendable, Equatable {
        /// The enrolled producer's id (its ZAP user id), "" on an insecure loopback socket.
        package var producer: String
        package var stream: String
        package var first: Int64
        package init(producer: String, stream: String, first: Int64) {
            (self.producer, self.stream, self.first) = (producer, stream, first)
        }
    }

    /// What ``append(_:at:rows:)`` stored.
    package struct StreamAppend: Sendable, Equatable {
        /// Row ids of the events stored (nil: none).
        package var ids: ClosedRange<Int64>?
        /// Leading rows skipped because their offsets were stored before (a re-sent message).
        package var skippedRows: Int
    }

    /// Appends the events of a stream message whose `rows` rows start at `position.first`; `events` are
    /// the valid ones, each with its row's index in the message. Rows below the stream's next offset are
    /// skipped (stored before); the rest are stored and the next offset moves past the message, in one
    /// transaction. Offsets only move forward, so a re-sent or replayed message never stores a row twice.
    package func append(_ events: [(row: Int, event: BehaviorEvent)], at position: StreamPosition,
                        rows: Int) throws(StorageError) -> StreamAppend {
        try append([StreamBatch(events: events, position: position, rows: rows)], recordShoppers: false)[0]
    }

    /// One stream's share of a multi-stream append.
    package struct StreamBatch: Sendable {
        package var events: [(row: Int, event: BehaviorEvent)]
        package var position: StreamPosition
        package var rows: Int
        package init(events: [(row: Int, event: BehaviorEvent)], position: StreamPosition, rows: Int) {
            (self.events, self.position, self.rows) = (events, position, rows)
        }
    }

    /// ``append(_:at:rows:)`` for several streams (a Kafka poll's partitions) in one transaction: one commit, one
    /// fsync. With `recordShoppers`, each stream's shoppers are recorded with its events, so that
    /// ``forgetStream(producer:stream:)`` can hand them over.
    package func append(_ batches: [StreamBatch], recordShoppers: Bool) throws(StorageError) -> [StreamAppend] {
        do {
            let outcomes = try pool.write { db -> [StreamAppend] in
                try batches.map { batch in try Self.append(batch, recordShoppers: recordShoppers, db) }
            }
            for outcome in outcomes { _ = try stored(outcome.ids) }
            return outcomes
        } catch let error as StorageError {
            throw error
        } catch {
            throw StorageError(path: path, operation: "append events of \(batches.count) streams", reason: "\(error)")
        }
    }

    private static func append(_ batch: StreamBatch, recordShoppers: Bool, _ db: Database) throws -> StreamAppend {
        let (events, position, rows) = (batch.events, batch.position, batch.rows)
        let next = try Int64.fetchOne(db, sql: "SELECT next_offset FROM ingest_stream WHERE producer = ? AND stream = ?",
                                      arguments: [position.producer, position.stream]) ?? 0
        let skip = Int(clamping: max(0, min(Int64(rows), next - position.first)))
        let end = position.first + Int64(rows)
        if end > next {
            try db.execute(sql: """
                INSERT INTO ingest_stream (producer, stream, next_offset, updated_at) VALUES (?, ?, ?, ?)
                ON CONFLICT(producer, stream) DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset),
                    updated_at = excluded.updated_at
                """, arguments: [position.producer, position.stream, end, Int64(Date().timeIntervalSince1970)])
        }
        let fresh = events.filter { $0.row >= skip }.map(\.event)
        if recordShoppers, !fresh.isEmpty {
            let record = try db.makeStatement(
                sql: "INSERT OR IGNORE INTO stream_user (producer, stream, user) VALUES (?, ?, ?)")
            for user in Set(fresh.map(\.user)) {
                try record.execute(arguments: [position.producer, position.stream, Int64(bitPattern: user)])
            }
        }
        return StreamAppend(ids: try Self.insert(fresh, db), skippedRows: skip)
    }

    /// The next offset the store expects of one stream (0: it holds none of it).
    package func nextOffset(producer: String, stream: String) throws(StorageError) -> Int64 {
        try read("read a stream's offset") { db in
            try Int64.fetchOne(db, sql: "SELECT next_offset FROM ingest_stream WHERE producer = ? AND stream = ?",
                               arguments: [producer, stream]) ?? 0
        }
    }

    /// Hands a stream's shoppers over (a Kafka partition revoked from this shard): deletes every event of every
    /// shopper recorded for it, and its offset, in one transaction; returns those shoppers. Read again later,
    /// the stream starts from its beginning.
    package func forgetStream(producer: String, stream: String) throws(StorageError) -> Set<UInt64> {
        do {
            return try pool.write { db in
                let users = try Int64.fetchAll(db, sql: "SELECT user FROM stream_user WHERE producer = ? AND stream = ?",
                                               arguments: [producer, stream])
                try db.execute(sql: """
                    DELETE FROM event WHERE user IN (SELECT user FROM stream_user WHERE producer = ? AND stream = ?)
                    """, arguments: [producer, stream])
                try db.execute(sql: "DELETE FROM stream_user WHERE producer = ? AND stream = ?", arguments: [producer, stream])
                try db.execute(sql: "DELETE FROM ingest_stream WHERE producer = ? AND stream = ?", arguments: [producer, stream])
                return Set(users.map { UInt64(bitPattern: $0) })
            }
        } catch {
            throw StorageError(path: path, operation: "hand over the shoppers of stream \(stream)", reason: "\(error)")
        }
    }

    /// Each producer's streams and the next offset the store expects (what a producer resumes from).
    package func streamPositions() throws(StorageError) -> [StreamPosition] {
        try read("read ingest stream offsets") { db in
            try Row.fetchAll(db, sql: "SELECT producer, stream, next_offset FROM ingest_stream ORDER BY producer, stream")
                .map { StreamPosition(producer: $0["producer"], stream: $0["stream"], first: $0["next_offset"]) }
        }
    }

    /// Appends `events` in one transaction; returns once they are durable, with the row ids they got
    /// (consecutive, in order; nil for an empty batch), so live scoring can tell them from history.
    @discardableResult
    package func append(_ events: [BehaviorEvent]) throws(StorageError) -> ClosedRange<Int64>? {
        try append(events, progress: nil)
    }

    /// A file being imported (``EventFileReader``): its identity and the lines read so far.
    package struct ImportProgress: Sendable, Equatable {
        /// The hash of the file's first `prefixBytes` bytes (``EventFileReader/sourceIdentity(prefixBytes:)``).
        package var source: String
        package var path: String
        package var prefixBytes: Int
        package var lines: Int
        package init(source: String, path: String, prefixBytes: Int, lines: Int) {
            (self.source, self.path, self.prefixBytes, self.lines) = (source, path, prefixBytes, lines)
        }
    }

    /// Every file imported so far, with the lines stored.
    package func importSources() throws(StorageError) -> [ImportProgress] {
        try read("read import progress") { db in
            try Row.fetchAll(db, sql: "SELECT id, path, prefix_bytes, lines FROM import_source").map { row in
                ImportProgress(source: row["id"], path: row["path"], prefixBytes: row["prefix_bytes"], lines: row["lines"])
            }
        }
    }

    /// Appends `events` and, in the same transaction, records `progress`: a crash leaves both or
    /// neither, so an interrupted import resumes after the last line stored, never adding one twice.
    @discardableResult
    package func append(_ events: [BehaviorEvent], progress: ImportProgress?) throws(StorageError) -> ClosedRange<Int64>? {
        guard !events.isEmpty || progress != nil else { return nil }
        do {
            let ids = try pool.write { db -> ClosedRange<Int64>? in
                if let progress {
                    try db.execute(sql: """
                        INSERT INTO import_source (id, path, prefix_bytes, lines, updated_at) VALUES (?, ?, ?, ?, ?)
                        ON CONFLICT(id) DO UPDATE SET path = excluded.path, lines = MAX(lines, excluded.lines),
                            updated_at = excluded.updated_at
                        """, arguments: [progress.source, progress.path, progress.prefixBytes, progress.lines,
                                         Int64(Date().timeIntervalSince1970)])
                }
                return try Self.insert(events, db)
            }
            return try stored(ids)
        } catch let error as StorageError {
            throw error
        } catch {
            throw StorageError(path: path, operation: "append \(events.count) events", reason: "\(error)")
        }
    }

    /// Inserts `events` in the caller's transaction; returns their row ids (nil for none).
    private static func insert(_ events: [BehaviorEvent], _ db: Database) throws -> ClosedRange<Int64>? {
        guard !events.isEmpty else { return nil }
        let insert = try db.makeStatement(
            sql: "INSERT INTO event (user, item, category, action, timestamp) VALUES (?, ?, ?, ?, ?)")
        var first: Int64?
        for event in events {
            try insert.execute(arguments: [Int64(bitPattern: event.user), Int64(bitPattern: event.item),
                                           Int64(bitPattern: event.category), Int(event.action.rawValue),
                                           event.timestamp])
            if first == nil { first = db.lastInsertedRowID }
        }
        // One writer, one transaction: AUTOINCREMENT ids of a batch are consecutive.
        return (first ?? db.lastInsertedRowID)...db.lastInsertedRowID
    }

    /// The highest event row id stored (0 when empty): every event stored later has a higher one.
    package func lastEventID() throws(StorageError) -> Int64 {
        try read("read the last event id") { db in try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM event") ?? 0 }
    }

    /// The newest stored event time (unix seconds); nil when the store is empty.
    package func latestEventTime() throws(StorageError) -> Int64? {
        try read("read the newest event time") { db in try Int64.fetchOne(db, sql: "SELECT MAX(timestamp) FROM event") }
    }

    package func eventCount() throws(StorageError) -> Int {
        try read("count events") { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM event") ?? 0 }
    }

    package func userCount() throws(StorageError) -> Int {
        try read("count users") { db in try Int.fetchOne(db, sql: "SELECT COUNT(DISTINCT user) FROM event") ?? 0 }
    }

    /// Events per shopper and category among rows `after` < id ≤ `upTo` (what arrived since a release).
    package func categoryCounts(after: Int64, upTo: Int64) throws(StorageError) -> [(user: UInt64, category: UInt64, events: Int)] {
        try read("count events per shopper and category") { db in
            try Row.fetchAll(db, sql: """
                SELECT user, category, COUNT(*) AS n FROM event WHERE id > ? AND id <= ? GROUP BY user, category
                """, arguments: [after, upTo]).map { row in
                (UInt64(bitPattern: row["user"] as Int64), UInt64(bitPattern: row["category"] as Int64), row["n"] as Int)
            }
        }
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
            try Self.visitSequences(db, sql: """
                SELECT user, item, category, action, timestamp FROM (
                    SELECT *, ROW_NUMBER() OVER (PARTITION BY user ORDER BY timestamp DESC, id DESC) AS recency
                    FROM event)
                WHERE recency <= ? ORDER BY user, timestamp, id
                """, arguments: [limit], body)
        }
    }

    /// One page of ``forEachRecentSequence(limit:_:)``: the next `users` users after `after` (in
    /// storage order; nil: from the first), counting only events with row id ≤ `upTo`. Returns where
    /// the next page starts, nil after the last. Each page is one short read, so a caller can do other
    /// work between pages.
    package func forEachRecentSequence(limit: Int, after: Int64?, users: Int, upTo: Int64,
                                       _ body: (UInt64, [BehaviorEvent]) throws -> Void) throws(StorageError) -> Int64? {
        try read("read recent sequences") { db in
            let start = after ?? .min
            let page = try Int64.fetchAll(db, sql: """
                SELECT DISTINCT user FROM event WHERE user > ? AND id <= ? ORDER BY user LIMIT ?
                """, arguments: [start, upTo, users])
            guard let last = page.last else { return nil }
            try Self.visitSequences(db, sql: """
                SELECT user, item, category, action, timestamp FROM (
                    SELECT *, ROW_NUMBER() OVER (PARTITION BY user ORDER BY timestamp DESC, id DESC) AS recency
                    FROM event WHERE user > ? AND user <= ? AND id <= ?)
                WHERE recency <= ? ORDER BY user, timestamp, id
                """, arguments: [start, last, upTo, limit], body)
            return page.count < users ? nil : last
        }
    }

    /// Calls `body` once per user with the rows of `sql` (user, item, category, action, timestamp;
    /// ordered by user), decoded.
    private static func visitSequences(_ db: Database, sql: String, arguments: StatementArguments,
                                       _ body: (UInt64, [BehaviorEvent]) throws -> Void) throws {
        let rows = try Row.fetchCursor(db, sql: sql, arguments: arguments)
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
