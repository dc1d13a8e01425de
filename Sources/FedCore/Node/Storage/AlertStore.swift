import FedIO
package import FedLogic
import FedModel
import Foundation
internal import GRDB

/// Alerts, written durably **before** they are published. After a crash, ``unpublished()`` returns the
/// alerts whose publication was not confirmed; they are published again with the same id (consumers
/// de-duplicate by id).
package final class AlertStore: DeliveryTableOutbox {
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
            migrator.registerMigration("v2: deliveries") { db in try DeliveryTable.create(db, items: "alert") }
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
    package func record(_ alerts: [DriftAlert], routes: (String) -> [(sink: String, due: Double)] = { _ in [] })
        throws(StorageError) -> [String]
    {
        guard !alerts.isEmpty else { return [] }
        var documents: [String] = []
        for alert in alerts { documents.append(try json(alert)) }
        let deliveries = alerts.map { routes($0.kind.rawValue) }
        do {
            try queue.write { db in
                for ((alert, json), routes) in zip(zip(alerts, documents), deliveries) {
                    try db.execute(sql: "INSERT OR IGNORE INTO alert (id, user, time, json) VALUES (?, ?, ?, ?)",
                                   arguments: [alert.id, Int64(bitPattern: alert.user), alert.time, json])
                    try DeliveryTable.insert(db, id: alert.id, routes: routes)
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

    /// The outbox's queries (``DeliveryOutbox``).
    var deliveries: DeliveryTable { DeliveryTable(items: "alert", path: path) }
    var database: DatabaseQueue { queue }

    /// `due` of a delivery set aside (given up): never due again, kept with its error.
    package static let givenUp = DeliveryTable.givenUp
    package typealias DeliveryCounts = FedNode.DeliveryCounts

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

extension AlertStore {
    /// The alerts due for `sink`, as messages: the alert's JSON, and its e-mail subject and text.
    package func due(sink: String, now: Double, limit: Int) throws(StorageError) -> [OutboxItem] {
        var items: [OutboxItem] = []
        for row in try deliveries.due(queue, sink: sink, now: now, limit: limit) {
            let alert = try decode(sequence: row.sequence, json: row.json)
            items.append(OutboxItem(id: alert.id, kind: alert.kind.rawValue, json: row.json,
                                    subject: AlertEmail.subject(alert), text: AlertEmail.summary(alert), attempts: row.attempts))
        }
        return items
    }

}
