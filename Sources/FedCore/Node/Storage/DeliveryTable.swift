import Foundation
internal import GRDB

/// Per sink: deliveries pending and done, the most attempts a pending one has had, and its last error.
package struct DeliveryCounts: Sendable, Equatable, Codable {
    package var pending: Int
    package var delivered: Int
    /// Refused as malformed by the receiver too often, and set aside (docs/ALERTS.md).
    package var givenUp = 0
    package var mostAttempts: Int
    package var lastError: String?
    enum CodingKeys: String, CodingKey {
        case pending, delivered, givenUp = "given_up", mostAttempts = "most_attempts", lastError = "last_error"
    }
}

/// One message waiting for a sink: what a webhook posts (`json`, whose `id` the receiver de-duplicates
/// by), what an e-mail says (`subject`, `text`), its kind (sinks choose kinds) and the failed attempts so far.
package struct OutboxItem: Sendable, Equatable {
    package var id: String
    package var kind: String
    package var json: String
    package var subject: String
    package var text: String
    package var attempts: Int

    package init(id: String, kind: String, json: String, subject: String, text: String, attempts: Int) {
        (self.id, self.kind, self.json, self.subject, self.text, self.attempts) = (id, kind, json, subject, text, attempts)
    }
}

/// A durable outbox that ``AlertDelivery`` works from: the agent's alerts (``AlertStore``) or the
/// aggregator's demand-trend warnings (``TrendStore``).
package protocol DeliveryOutbox: Sendable {
    /// Up to `limit` deliveries to `sink` due at `now` (unix seconds), oldest message first.
    func due(sink: String, now: Double, limit: Int) throws(StorageError) -> [OutboxItem]
    /// Marks the deliveries of `ids` to `sink` done at `time`.
    func delivered(_ ids: [String], sink: String, at time: Double) throws(StorageError)
    /// One more failed attempt for `ids` at `sink`: next try at `due` (``DeliveryTable/givenUp`` sets it aside).
    func failed(_ ids: [String], sink: String, due: Double, error: String) throws(StorageError)
    func deliveryCounts() throws(StorageError) -> [String: DeliveryCounts]
}

/// An outbox kept in SQLite with a ``DeliveryTable``: the bookkeeping is the table's.
protocol DeliveryTableOutbox: DeliveryOutbox {
    var deliveries: DeliveryTable { get }
    var database: DatabaseQueue { get }
}

extension DeliveryTableOutbox {
    package func delivered(_ ids: [String], sink: String, at time: Double) throws(StorageError) {
        try deliveries.delivered(database, ids, sink: sink, at: time)
    }

    package func failed(_ ids: [String], sink: String, due: Double, error: String) throws(StorageError) {
        try deliveries.failed(database, ids, sink: sink, due: due, error: error)
    }

    package func deliveryCounts() throws(StorageError) -> [String: DeliveryCounts] { try deliveries.counts(database) }
}

/// The `delivery` table both outboxes share — one row per message and sink, written in the message's
/// own transaction — and its queries. `items` names the message table (with `sequence`, `id`, `json`).
struct DeliveryTable {
    let items: String
    let path: String

    /// `due` of a delivery set aside (given up): never due again, kept with its error.
    static let givenUp = 9e18

    static func create(_ db: Database, items: String) throws {
        try db.create(table: "delivery") { table in
            table.column("alert", .text).notNull().references(items, column: "id")  // the message's id
            table.column("sink", .text).notNull()
            table.column("due", .double).notNull()
            table.column("attempts", .integer).notNull().defaults(to: 0)
            table.column("delivered", .double)
            table.column("error", .text)
            table.primaryKey(["alert", "sink"])
        }
        try db.create(index: "delivery_due", on: "delivery", columns: ["sink", "delivered", "due"])
    }

    static func insert(_ db: Database, id: String, routes: [(sink: String, due: Double)]) throws {
        for route in routes {
            try db.execute(sql: "INSERT OR IGNORE INTO delivery (alert, sink, due) VALUES (?, ?, ?)",
                           arguments: [id, route.sink, route.due])
        }
    }

    func due(_ queue: DatabaseQueue, sink: String, now: Double, limit: Int) throws(StorageError)
        -> [(sequence: Int64, json: String, attempts: Int)]
    {
        do {
            return try queue.read { db in
                try Row.fetchAll(db, sql: """
                    SELECT \(items).sequence, \(items).json, delivery.attempts FROM delivery
                    JOIN \(items) ON \(items).id = delivery.alert
                    WHERE delivery.sink = ? AND delivery.delivered IS NULL AND delivery.due <= ?
                    ORDER BY \(items).sequence LIMIT ?
                    """, arguments: [sink, now, limit]).map { ($0["sequence"], $0["json"], $0["attempts"]) }
            }
        } catch {
            throw StorageError(path: path, operation: "read deliveries to \(sink)", reason: "\(error)")
        }
    }

    func delivered(_ queue: DatabaseQueue, _ ids: [String], sink: String, at time: Double) throws(StorageError) {
        guard !ids.isEmpty else { return }
        do {
            try queue.write { db in
                for id in ids {
                    try db.execute(sql: "UPDATE delivery SET delivered = ?, error = NULL WHERE alert = ? AND sink = ?",
                                   arguments: [time, id, sink])
                }
            }
        } catch {
            throw StorageError(path: path, operation: "mark \(ids.count) deliveries to \(sink) done", reason: "\(error)")
        }
    }

    func failed(_ queue: DatabaseQueue, _ ids: [String], sink: String, due: Double, error: String) throws(StorageError) {
        do {
            try queue.write { db in
                for id in ids {
                    try db.execute(sql: """
                        UPDATE delivery SET attempts = attempts + 1, due = ?, error = ? WHERE alert = ? AND sink = ?
                        """, arguments: [due, String(error.prefix(500)), id, sink])
                }
            }
        } catch {
            throw StorageError(path: path, operation: "record a failed delivery to \(sink)", reason: "\(error)")
        }
    }

    func counts(_ queue: DatabaseQueue) throws(StorageError) -> [String: DeliveryCounts] {
        do {
            return try queue.read { db in
                var counts: [String: DeliveryCounts] = [:]
                for row in try Row.fetchAll(db, sql: """
                    SELECT sink, SUM(delivered IS NULL AND due < 9e18) AS pending, SUM(delivered IS NOT NULL) AS done,
                           SUM(delivered IS NULL AND due >= 9e18) AS dead,
                           MAX(CASE WHEN delivered IS NULL AND due < 9e18 THEN attempts ELSE 0 END) AS most,
                           (SELECT error FROM delivery d WHERE d.sink = delivery.sink AND d.delivered IS NULL
                            AND d.error IS NOT NULL ORDER BY d.attempts DESC LIMIT 1) AS error
                    FROM delivery GROUP BY sink
                    """) {
                    counts[row["sink"]] = DeliveryCounts(pending: row["pending"], delivered: row["done"], givenUp: row["dead"],
                                                         mostAttempts: row["most"], lastError: row["error"])
                }
                return counts
            }
        } catch {
            throw StorageError(path: path, operation: "count deliveries", reason: "\(error)")
        }
    }
}
