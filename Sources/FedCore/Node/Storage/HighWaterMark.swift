import Foundation

/// A number kept beside a database, outside it: the most entries a privacy ledger ever held, the last
/// round a checkpoint saved. A database found holding less — emptied, replaced by an older copy or
/// deleted (SQLite would quietly create a new, empty one) — is an error at start naming the file and
/// the fix, never a fresh start: a ledger that went back would re-spend a privacy budget, a checkpoint
/// that went back would start a new federation under an old one's agents.
package struct HighWaterMark: Sendable {
    /// `<database>.highwater`.
    package let path: String
    package let database: String
    package let what: String

    package init(database: String, what: String) {
        (self.database, self.what) = (database, what)
        path = database + ".highwater"
    }

    /// The recorded value; 0 when no mark was ever written.
    package func recorded() -> Int64 {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return 0 }
        return text.split(whereSeparator: \.isWhitespace).last.flatMap { Int64($0) } ?? 0
    }

    /// Throws when the database holds less than was recorded.
    package func check(current: Int64) throws(StorageError) {
        let recorded = recorded()
        guard current >= recorded else {
            throw StorageError(path: database, operation: "open \(what)", reason: """
                it holds \(current) but held \(recorded) (\(path)): it was emptied, replaced by an older copy or \
                deleted. Restore it from a backup. Only to start over on purpose, delete \(path) as well
                """)
        }
    }

    /// Records `value` when it is higher than the recorded one (written atomically).
    package func raise(to value: Int64) throws(StorageError) {
        guard value > recorded() else { return }
        let text = "# FedDrift: the most the \(what) \((database as NSString).lastPathComponent) has held; do not edit.\n\(value)\n"
        do {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw StorageError(path: path, operation: "record the \(what)'s high-water mark", reason: "\(error)")
        }
    }
}
