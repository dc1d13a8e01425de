package import FedIO
package import FedLogic
package import FedModel
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
        }
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    /// The alert as published: one JSON object.
    package static func json(_ alert: DriftAlert) -> String {
        (try? String(decoding: encoder.encode(alert), as: UTF8.self)) ?? "{}"
    }

    /// Stores `alert` durably (idempotent by id); returns its JSON.
    @discardableResult
    package func record(_ alert: DriftAlert) throws(StorageError) -> String {
        let json = Self.json(alert)
        do {
            try queue.write { db in
                try db.execute(sql: "INSERT OR IGNORE INTO alert (id, user, time, json) VALUES (?, ?, ?, ?)",
                               arguments: [alert.id, Int64(bitPattern: alert.user), alert.time, json])
            }
        } catch {
            throw StorageError(path: path, operation: "record alert \(alert.id)", reason: "\(error)")
        }
        return json
    }

    package func markPublished(_ id: String) throws(StorageError) {
        do {
            try queue.write { db in try db.execute(sql: "UPDATE alert SET published = 1 WHERE id = ?", arguments: [id]) }
        } catch {
            throw StorageError(path: path, operation: "mark alert \(id) published", reason: "\(error)")
        }
    }

    /// Alerts stored but not yet confirmed published, oldest first.
    package func unpublished() throws(StorageError) -> [DriftAlert] {
        try alerts(sql: "SELECT json FROM alert WHERE published = 0 ORDER BY sequence", arguments: [])
    }

    /// Alerts raised at or after event time `since` (unix seconds), oldest first.
    package func list(since: Int64 = .min, limit: Int = 1_000) throws(StorageError) -> [DriftAlert] {
        try alerts(sql: "SELECT json FROM alert WHERE time >= ? ORDER BY sequence LIMIT ?", arguments: [since, limit])
    }

    /// Alerts stored after sequence number `after` (for following), with their sequence numbers.
    package func newer(than after: Int64) throws(StorageError) -> [(sequence: Int64, alert: DriftAlert)] {
        do {
            return try queue.read { db in
                try Row.fetchAll(db, sql: "SELECT sequence, json FROM alert WHERE sequence > ? ORDER BY sequence",
                                 arguments: [after]).compactMap { row in
                    let json: String = row["json"]
                    return (try? JSONDecoder().decode(DriftAlert.self, from: Data(json.utf8))).map { (row["sequence"], $0) }
                }
            }
        } catch {
            throw StorageError(path: path, operation: "read alerts", reason: "\(error)")
        }
    }

    private func alerts(sql: String, arguments: StatementArguments) throws(StorageError) -> [DriftAlert] {
        do {
            return try queue.read { db in
                try String.fetchAll(db, sql: sql, arguments: arguments).compactMap {
                    try? JSONDecoder().decode(DriftAlert.self, from: Data($0.utf8))
                }
            }
        } catch {
            throw StorageError(path: path, operation: "read alerts", reason: "\(error)")
        }
    }
}
