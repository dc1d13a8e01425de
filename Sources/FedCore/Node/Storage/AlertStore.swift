import FedIO
package import FedLogic
import FedModel
import Foundation
internal import GRDB

/// Alerts, written durably **before** they are published. After a crash, ``unpublished()`` returns the
/// alerts whose publication was not confirmed; they are published again with the same id (consumers
/// de-duplicate by id).
package final class AlertStore: Sendable {
    package let path: String
    private let queue: DatabaseQueue

    package init(path: String) throws(StorageError) {
        self.path = path
        queue = try DatabaseQueue.durable(path: path, what: "alert store") { migrator in
            migrator.registerMigration("v1: alerts") { db in
                try db.create(table: "alert") { table in
                    table.autoIncrementedPrimaryKey("sequence")
                    table.column("id", .text).notNull().unique()
                    table.column("user", .integer).notNull()
                    table.column("time", .integer).notNull()
                    table.column("json", .text).notNull()
                    table.column("published", .boolean).notNull().defaults(to: false)
                }
            }
            // The delivery outbox: one row per alert and sink, written in the alert's own transaction, so
            // an alert is never stored without its deliveries (nor delivered without being stored).
            migrator.registerMigration("v2: deliveries") { db in
                try db.create(table: "delivery") { table in
                    table.column("alert", .text).notNull().references("alert", column: "id")
                    table.column("sink", .text).notNull()
                    table.column("due", .double).notNull()
                    table.column("attempts", .integer).notNull().defaults(to: 0)
                    table.column("delivered", .double)
                    table.column("error", .text)
                    table.primaryKey(["alert", "sink"])
                }
                try db.create(index: "delivery_due", on: "delivery", columns: ["sink", "delivered", "due"])
            }
        }
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    /// The alert as published: one JSON object. Fails (naming the alert) only for a value JSON cannot
    /// hold, such as a non-finite score.
    package func json(_ alert: DriftAlert) throws(StorageError) -> String {
        do {
            return String(decoding: try Self.encoder.encode(alert), as: UTF8.self)
        } catch {
            throw StorageError(path: path, operation: "encode alert \(alert.id)", reason: "\(error)")
        }
    }

    /// Stores `alerts` durably in one transaction (idempotent by id), with a pending delivery for each
    /// sink `routes` names for an alert (and when it falls due, unix seconds); returns their JSON, in order.
    @discardableResult
    package func record(_ alerts: [DriftAlert], routes: (DriftAlert) -> [(sink: String, due: Double)] = { _ in [] })
        throws(StorageError) -> [String]
    {
        guard !alerts.isEmpty else { return [] }
        var documents: [String] = []
        for alert in alerts { documents.append(try json(alert)) }
        let deliveries = alerts.map(routes)
        do {
            try queue.write { db in
                for ((alert, json), routes) in zip(zip(alerts, documents), deliveries) {
                    try db.execute(sql: "INSERT OR IGNORE INTO alert (id, user, time, json) VALUES (?, ?, ?, ?)",
                                   arguments: [alert.id, Int64(bitPattern: alert.user), alert.time, json])
                    for route in routes {
                        try db.execute(sql: "INSERT OR IGNORE INTO delivery (alert, sink, due) VALUES (?, ?, ?)",
                                       arguments: [alert.id, route.sink, route.due])
                    }
                }
            }
        } catch {
            throw StorageError(path: path, operation: "record \(alerts.count) alerts", reason: "\(error)")
        }
        return documents
    }

    /// Marks `ids` published, in one transaction.
    package func markPublished(_ ids: [String]) throws(StorageError) {
        guard !ids.isEmpty else { return }
        do {
            try queue.write { db in
                for id in ids { try db.execute(sql: "UPDATE alert SET published = 1 WHERE id = ?", arguments: [id]) }
            }
        } catch {
            throw StorageError(path: path, operation: "mark \(ids.count) alerts published", reason: "\(error)")
        }
    }

    /// A pending delivery: the alert, and how many attempts failed before.
    package struct Delivery: Sendable {
        package var alert: DriftAlert
        package var attempts: Int
    }

    /// Up to `limit` deliveries to `sink` due at `now` (unix seconds), oldest alert first.
    package func due(sink: String, now: Double, limit: Int = 100) throws(StorageError) -> [Delivery] {
        let rows: [Row]
        do {
            rows = try queue.read { db in
                try Row.fetchAll(db, sql: """
                    SELECT alert.sequence, alert.json, delivery.attempts FROM delivery
                    JOIN alert ON alert.id = delivery.alert
                    WHERE delivery.sink = ? AND delivery.delivered IS NULL AND delivery.due <= ?
                    ORDER BY alert.sequence LIMIT ?
                    """, arguments: [sink, now, limit])
            }
        } catch {
            throw StorageError(path: path, operation: "read deliveries to \(sink)", reason: "\(error)")
        }
        var deliveries: [Delivery] = []
        for row in rows {
            deliveries.append(Delivery(alert: try decode(sequence: row["sequence"], json: row["json"]),
                                       attempts: row["attempts"]))
        }
        return deliveries
    }

    /// Marks the deliveries of `ids` to `sink` done at `time`, in one transaction.
    package func delivered(_ ids: [String], sink: String, at time: Double) throws(StorageError) {
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

    /// `due` of a delivery set aside (given up): never due again, kept with its error.
    package static let givenUp = 9e18

    /// Records a failed attempt for `ids` at `sink`: one more attempt, next try at `due` (``givenUp``
    /// to set it aside), and why.
    package func failed(_ ids: [String], sink: String, due: Double, error: String) throws(StorageError) {
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

    package func deliveryCounts() throws(StorageError) -> [String: DeliveryCounts] {
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

    /// Alerts stored but not yet confirmed published, oldest first.
    package func unpublished() throws(StorageError) -> [DriftAlert] {
        try newer(sql: "SELECT sequence, json FROM alert WHERE published = 0 ORDER BY sequence", arguments: []).map(\.alert)
    }

    /// Alerts raised at or after event time `since` (unix seconds), oldest first.
    package func list(since: Int64 = .min, limit: Int = 1_000) throws(StorageError) -> [DriftAlert] {
        try newer(sql: "SELECT sequence, json FROM alert WHERE time >= ? ORDER BY sequence LIMIT ?",
                  arguments: [since, limit]).map(\.alert)
    }

    /// The newest `limit` alerts, oldest first.
    package func recent(limit: Int) throws(StorageError) -> [DriftAlert] {
        try newer(sql: "SELECT * FROM (SELECT sequence, json FROM alert ORDER BY sequence DESC LIMIT ?) ORDER BY sequence",
                  arguments: [limit]).map(\.alert)
    }

    /// Alerts stored after sequence number `after` (for following), with their sequence numbers.
    package func newer(than after: Int64) throws(StorageError) -> [(sequence: Int64, alert: DriftAlert)] {
        try newer(sql: "SELECT sequence, json FROM alert WHERE sequence > ? ORDER BY sequence", arguments: [after])
    }

    /// Reads `(sequence, json)` rows; a row that does not decode is an error naming its sequence number,
    /// never silently skipped.
    private func newer(sql: String, arguments: StatementArguments) throws(StorageError)
        -> [(sequence: Int64, alert: DriftAlert)]
    {
        let rows: [Row]
        do {
            rows = try queue.read { db in try Row.fetchAll(db, sql: sql, arguments: arguments) }
        } catch {
            throw StorageError(path: path, operation: "read alerts", reason: "\(error)")
        }
        var alerts: [(sequence: Int64, alert: DriftAlert)] = []
        for row in rows {
            let sequence: Int64 = row["sequence"]
            alerts.append((sequence, try decode(sequence: sequence, json: row["json"])))
        }
        return alerts
    }

    private func decode(sequence: Int64, json: String) throws(StorageError) -> DriftAlert {
        do {
            return try JSONDecoder().decode(DriftAlert.self, from: Data(json.utf8))
        } catch {
            throw StorageError(path: path, operation: "read alert #\(sequence)",
                               reason: "stored JSON does not decode (\(error)); the file was changed outside FedDrift")
        }
    }
}
