import FedIO
package import FedLogic
import FedModel
import Foundation
internal import GRDB

/// Checkpoints in SQLite: each save is one transaction (WAL, synchronous=FULL), so a crash leaves
/// either the previous checkpoint or the new one, never a mix. The model is stored in the
/// ``ModelFile`` format, so its CRC is checked again on load.
package final class CheckpointStore: Sendable {
    package let path: String
    private let queue: DatabaseQueue
    /// The last round saved, kept outside the database (`checkpoint.sqlite.highwater`): a checkpoint
    /// emptied, deleted or replaced by an older copy is an error at load, not a new federation at round 0.
    private let mark: HighWaterMark

    package init(path: String) throws(StorageError) {
        self.path = path
        queue = try DatabaseQueue.durable(path: path, what: "checkpoint store") { migrator in
            migrator.registerMigration("v1: checkpoint") { db in
                try db.create(table: "checkpoint") { table in
                    table.primaryKey("id", .integer).check { $0 == 1 }
                    table.column("round", .integer).notNull()
                    table.column("model_version", .integer).notNull()
                    table.column("model", .blob).notNull()
                    table.column("optimizer_state", .blob).notNull()
                }
                try db.create(table: "agent") { table in
                    table.primaryKey("id", .text)
                    table.column("last_round", .integer).notNull()
                    table.column("accepted", .integer).notNull()
                    table.column("rejected", .integer).notNull()
                }
            }
            migrator.registerMigration("v2: clip norm") { db in
                try db.alter(table: "checkpoint") { table in table.add(column: "clip_norm", .double) }
            }
            migrator.registerMigration("v3: alert thresholds") { db in
                try db.alter(table: "checkpoint") { table in
                    table.add(column: "interest_shift_threshold", .double)
                    table.add(column: "churn_threshold", .double)
                }
            }
            migrator.registerMigration("v4: privacy-ledger heads") { db in
                try db.alter(table: "agent") { table in
                    table.add(column: "ledger_sequence", .integer).notNull().defaults(to: 0)
                    table.add(column: "ledger_head", .text).notNull().defaults(to: "")
                }
            }
        }
        mark = HighWaterMark(database: path, what: "checkpoint")
    }

    /// Replaces the checkpoint atomically.
    package func save(_ checkpoint: AggregatorCheckpoint) throws(StorageError) {
        try save(checkpoint, encodedModel: ModelFile.encode(checkpoint.parameters, modelVersion: checkpoint.modelVersion))
    }

    /// Replaces the checkpoint atomically; `encodedModel` is `ModelFile.encode` of its parameters.
    package func save(_ checkpoint: AggregatorCheckpoint, encodedModel: [UInt8]) throws(StorageError) {
        let model = Data(encodedModel)
        let optimizer = checkpoint.optimizerState.withUnsafeBytes { Data($0) }
        do {
            try queue.write { db in
                try db.execute(sql: """
                    INSERT INTO checkpoint (id, round, model_version, model, optimizer_state, clip_norm,
                                            interest_shift_threshold, churn_threshold)
                    VALUES (1, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET round = excluded.round, model_version = excluded.model_version,
                        model = excluded.model, optimizer_state = excluded.optimizer_state, clip_norm = excluded.clip_norm,
                        interest_shift_threshold = excluded.interest_shift_threshold,
                        churn_threshold = excluded.churn_threshold
                    """, arguments: [Int64(bitPattern: checkpoint.round), Int64(bitPattern: checkpoint.modelVersion),
                                     model, optimizer, checkpoint.clipNorm, checkpoint.thresholds?.interestShift,
                                     checkpoint.thresholds?.churnRisk])
                try db.execute(sql: "DELETE FROM agent")
                for (id, record) in checkpoint.agents {
                    try db.execute(sql: """
                        INSERT INTO agent (id, last_round, accepted, rejected, ledger_sequence, ledger_head)
                        VALUES (?, ?, ?, ?, ?, ?)
                        """, arguments: [id, Int64(bitPattern: record.lastRound), record.acceptedUpdates,
                                         record.rejectedUpdates, record.ledgerSequence, record.ledgerHead])
                }
                Failpoint.aggregatorCheckpointWrite.reach()
            }
        } catch {
            throw StorageError(path: path, operation: "save checkpoint of round \(checkpoint.round)", reason: "\(error)")
        }
        try mark.raise(to: Int64(clamping: checkpoint.round))
    }

    /// The last saved checkpoint, or `nil` when none was ever saved.
    package func load() throws(StorageError) -> AggregatorCheckpoint? {
        let loaded: (Row, [Row])?
        do {
            loaded = try queue.read { db in
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM checkpoint WHERE id = 1") else { return nil }
                return (row, try Row.fetchAll(db, sql: "SELECT * FROM agent"))
            }
        } catch {
            throw StorageError(path: path, operation: "load checkpoint", reason: "\(error)")
        }
        let round = loaded.map { UInt64(bitPattern: $0.0["round"] as Int64) } ?? 0
        try mark.check(current: Int64(clamping: round))
        guard let (row, agentRows) = loaded else { return nil }
        let model: (parameters: LSTMParameters<Float>, modelVersion: UInt64)
        do {
            model = try ModelFile.decode(Array(row["model"] as Data), path: path + "#checkpoint.model")
        } catch {
            throw StorageError(path: path, operation: "load checkpoint", reason: "\(error)")
        }
        let optimizerBytes: Data = row["optimizer_state"]
        let optimizerState = optimizerBytes.doubles
        var agents: [String: AggregatorCheckpoint.AgentRecord] = [:]
        for agent in agentRows {
            agents[agent["id"]] = .init(lastRound: UInt64(bitPattern: agent["last_round"] as Int64),
                                        acceptedUpdates: agent["accepted"], rejectedUpdates: agent["rejected"],
                                        ledgerSequence: agent["ledger_sequence"], ledgerHead: agent["ledger_head"])
        }
        var thresholds: AlertThresholds?
        if let shift = row["interest_shift_threshold"] as Double?, let churn = row["churn_threshold"] as Double? {
            thresholds = AlertThresholds(interestShift: shift, churnRisk: churn)
        }
        return AggregatorCheckpoint(round: UInt64(bitPattern: row["round"] as Int64), modelVersion: model.modelVersion,
                                    parameters: model.parameters, optimizerState: optimizerState, agents: agents,
                                    clipNorm: row["clip_norm"], thresholds: thresholds)
    }
}

extension Data {
    /// The bytes as little-endian float64 values (SQLite blobs carry no alignment guarantee).
    var doubles: [Double] {
        withUnsafeBytes { raw in
            (0..<(raw.count / 8)).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self))) }
        }
    }
}
