@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
import Foundation
import Testing

/// State that cannot silently vanish: a privacy ledger or checkpoint found emptied, deleted or replaced
/// by an older copy is an error naming the file and the fix, not a fresh budget or a new federation.
@Suite("State that cannot silently vanish")
struct StateIntegrityTests {
    static func directory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-state-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    static func remove(database path: String) {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
    }

    @Test("An event store deleted or replaced by an older copy is refused at open, naming the file and the fix")
    func eventStoreCannotGoBack() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("events.sqlite").path
        let event = BehaviorEvent(user: 1, item: 2, category: 3, action: .view, timestamp: 1_600_000_000)
        do {
            let store = try EventStore(path: path)
            try store.append([event, event])
        }  // closed: the mark is written
        #expect(HighWaterMark(database: path, what: "event store").recorded() == 2)
        let older = try Data(contentsOf: URL(fileURLWithPath: path))
        do {
            let store = try EventStore(path: path)
            try store.append([event])
        }
        Self.remove(database: path)
        var error: StorageError?
        do { _ = try EventStore(path: path) } catch let caught { error = caught }
        #expect(error?.description.contains(path) == true && error?.description.contains("Restore it from a backup") == true,
                "\(String(describing: error))")
        // An older copy (2 events where 3 were) is refused too; the control: the current file opens.
        Self.remove(database: path)
        try older.write(to: URL(fileURLWithPath: path))
        #expect(throws: StorageError.self) { _ = try EventStore(path: path) }
        try FileManager.default.removeItem(atPath: path + ".highwater")
        #expect(try EventStore(path: path).eventCount() == 2, "deleting the mark is the explicit fresh start")
    }

    @Test("A ledger deleted, emptied or replaced by an older copy is refused at open; deleting its mark too is the explicit fresh start")
    func ledgerCannotGoBack() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("privacy.sqlite").path
        let budget = PrivacyBudget(epsilon: 100, delta: 1e-6)
        func charge(_ ledger: PrivacyLedger, round: UInt64) throws {
            _ = try ledger.charge(.subsampledGaussian(mechanism: "model_update", round: round, q: 0.1, noiseMultiplier: 1))
        }
        do {
            let ledger = try PrivacyLedger(path: path, budget: budget)
            try charge(ledger, round: 1)
        }
        let older = directory.appendingPathComponent("older.sqlite").path
        try FileManager.default.copyItem(atPath: path, toPath: older)  // a backup taken after one release
        do {
            let ledger = try PrivacyLedger(path: path, budget: budget)  // control: intact, it opens
            try charge(ledger, round: 2)
            try charge(ledger, round: 3)
            #expect(try ledger.spentEpsilon() > 0)
        }
        func refused() -> Bool {
            do {
                _ = try PrivacyLedger(path: path, budget: budget)
                return false
            } catch {
                return error.path == path && error.reason.contains("held 3") && error.reason.contains(".highwater")
            }
        }
        // Deleted: SQLite would create a new, empty ledger with the whole budget left.
        Self.remove(database: path)
        #expect(refused())
        // Replaced by the older copy (one release instead of three).
        Self.remove(database: path)
        try FileManager.default.copyItem(atPath: older, toPath: path)
        #expect(refused())
        // Starting over on purpose: the mark goes too.
        Self.remove(database: path)
        try FileManager.default.removeItem(atPath: path + ".highwater")
        #expect(try PrivacyLedger(path: path, budget: budget).spentEpsilon() == 0)
    }

    @Test("A checkpoint deleted or replaced by an older round's is refused at load instead of starting a new federation at round 0")
    func checkpointCannotGoBack() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("checkpoint.sqlite").path
        let shape = LSTMShape(categories: 8, embedding: 4, hidden: 4)
        func checkpoint(_ round: UInt64) -> AggregatorCheckpoint {
            AggregatorCheckpoint(round: round, modelVersion: round, parameters: LSTMParameters(shape: shape, seed: 1),
                                 optimizerState: [], agents: [:])
        }
        try CheckpointStore(path: path).save(checkpoint(2))
        let older = directory.appendingPathComponent("older.sqlite").path
        try FileManager.default.copyItem(atPath: path, toPath: older)
        try CheckpointStore(path: path).save(checkpoint(5))
        #expect(try CheckpointStore(path: path).load()?.round == 5, "control: intact, it loads")
        func refused() -> Bool {
            do {
                _ = try CheckpointStore(path: path).load()
                return false
            } catch {
                return error.path == path && error.reason.contains("held 5")
            }
        }
        Self.remove(database: path)
        #expect(refused())
        Self.remove(database: path)  // the refused open left a new, empty file
        try FileManager.default.copyItem(atPath: older, toPath: path)
        #expect(refused())
    }
}
