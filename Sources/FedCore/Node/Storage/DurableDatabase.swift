import Foundation
internal import GRDB

/// A failure of one of the node's SQLite stores (events, alerts, privacy ledger, checkpoint): which
/// file, what was being done, and why. The one error type of the storage layer.
package struct StorageError: Error, CustomStringConvertible, Sendable {
    package let path, operation, reason: String

    package init(path: String, operation: String, reason: String) {
        (self.path, self.operation, self.reason) = (path, operation, reason)
    }

    package var description: String { "\(path): \(operation) failed: \(reason)" }
}

extension DatabaseQueue {
    /// Opens (creating if needed) a durable single-writer SQLite database at `path` and brings its schema
    /// up to date with `migrations`; failures carry the path and `what` was being opened.
    static func durable(path: String, what: String, migrations: (inout DatabaseMigrator) -> Void)
        throws(StorageError) -> DatabaseQueue
    {
        var migrator = DatabaseMigrator()
        migrations(&migrator)
        return try openDurable(path: path, what: what, migrator: migrator) {
            try DatabaseQueue(path: $0, configuration: .durable)
        }
    }
}

extension DatabasePool {
    /// ``DatabaseQueue/durable(path:what:migrations:)`` for a store read while it is written (WAL: readers
    /// never block the writer).
    static func durable(path: String, what: String, migrator: DatabaseMigrator) throws(StorageError) -> DatabasePool {
        try openDurable(path: path, what: what, migrator: migrator) {
            try DatabasePool(path: $0, configuration: .durable)
        }
    }
}

/// Opens a database with `make` and migrates it, mapping every failure to a ``StorageError``.
private func openDurable<Writer: DatabaseWriter>(path: String, what: String, migrator: DatabaseMigrator,
                                          make: (String) throws -> Writer) throws(StorageError) -> Writer {
    do {
        let writer = try make(path)
        try migrator.migrate(writer)
        return writer
    } catch {
        throw StorageError(path: path, operation: "open \(what)", reason: "\(error)")
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
