package import FedIO
package import FedLogic
import FedModel
import Foundation
internal import GRDB

/// Why a release was refused.
package enum PrivacyLedgerError: Error, CustomStringConvertible, Sendable {
    case budgetExceeded(spent: Double, wouldBe: Double, budget: PrivacyBudget, mechanism: String)
    case storage(StorageError)

    package var description: String {
        switch self {
        case let .budgetExceeded(spent, wouldBe, budget, mechanism):
            String(format: "privacy budget exhausted: %@ would raise ε from %.4f to %@ (budget ε = %g at δ = %g); "
                   + "the release was not made", mechanism, spent, wouldBe.isFinite ? String(format: "%.4f", wouldBe) : "∞",
                   budget.epsilon, budget.delta)
        case let .storage(error): "privacy ledger: \(error)"
        }
    }
}

/// An agent's persistent privacy ledger (SQLite, WAL, `synchronous = FULL`).
///
/// Every noisy release is charged here **before** it leaves the process: ``charge(_:)`` composes the
/// release's RDP with everything spent so far (all mechanisms, all rounds), refuses it if ε at the
/// budget's δ would exceed the budget, and otherwise commits a row durably, and only then returns.
/// A crash after the commit and before the send over-counts (a charged release that never left);
/// nothing can under-count, because nothing is sent without a committed row.
///
/// The rows form a **hash chain signed by the agent**: each entry's hash is BLAKE2b-256 over the
/// previous entry's hash and every field of the entry, and the agent signs it with its Ed25519 key,
/// so an edited, deleted, inserted or reordered entry — or a ledger emptied and restarted — no longer
/// verifies against the agent's public key (``verify(signer:)``, `edge-agent privacy --verify`).
package final class PrivacyLedger: Sendable {
    package struct Entry: Sendable, Equatable {
        package var id: Int64
        package var round: UInt64
        package var mechanism: String
        package var samplingRate: Double
        package var noiseMultiplier: Double
        /// ε of everything up to and including this release, at the budget's δ.
        package var epsilonAfter: Double
        package var createdAtMilliseconds: Int64
    }

    package let path: String
    package let budget: PrivacyBudget
    private let queue: DatabaseQueue
    private let signer: SigningKeyPair?
    /// The most entries this ledger ever held, kept outside it (`privacy.sqlite.highwater`): a ledger
    /// emptied, deleted or replaced by an older copy is an error at open, not a fresh budget.
    private let mark: HighWaterMark

    /// `signer`: the agent's signing keys (entries are chained but unsigned without them: tests, tools).
    package init(path: String, budget: PrivacyBudget, signer: SigningKeyPair? = nil) throws(StorageError) {
        self.path = path
        self.budget = budget
        self.signer = signer
        queue = try DatabaseQueue.durable(path: path, what: "privacy ledger") { migrator in
            migrator.registerMigration("v1: releases") { db in
                try db.create(table: "release") { table in
                    table.autoIncrementedPrimaryKey("id")
                    table.column("round", .integer).notNull()
                    table.column("mechanism", .text).notNull()
                    table.column("sampling_rate", .double).notNull()
                    table.column("noise_multiplier", .double).notNull()
                    table.column("rdp", .blob).notNull()  // float64 × RDP.defaultOrders.count
                    table.column("epsilon_after", .double).notNull()
                    table.column("created_at_ms", .integer).notNull()
                }
            }
            migrator.registerMigration("v2: signed hash chain") { db in
                try db.alter(table: "release") { table in
                    table.add(column: "previous_hash", .blob)
                    table.add(column: "entry_hash", .blob)
                    table.add(column: "signature", .blob)
                }
            }
        }
        mark = HighWaterMark(database: path, what: "privacy ledger")
        try mark.check(current: try lastID())
    }

    /// The composed RDP of every release so far, per order.
    package func spentRDP() throws(StorageError) -> [Double] {
        do {
            return try queue.read { db in try Self.totalRDP(db) }
        } catch {
            throw StorageError(path: path, operation: "read privacy ledger", reason: "\(error)")
        }
    }

    /// ε spent so far at the budget's δ.
    package func spentEpsilon() throws(StorageError) -> Double {
        RDP.epsilon(rdp: try spentRDP(), delta: budget.delta).epsilon
    }

    /// ε after `release` on top of what is spent, without charging it.
    package func epsilon(after release: PlannedRelease) throws(StorageError) -> Double {
        let total = zip(try spentRDP(), release.rdp).map { $0 + $1 }
        return RDP.epsilon(rdp: total, delta: budget.delta).epsilon
    }

    /// Charges `release` durably, or refuses it when it would exceed the budget. Returns ε after it.
    @discardableResult
    package func charge(_ release: PlannedRelease) throws(PrivacyLedgerError) -> Double {
        precondition(release.rdp.count == RDP.defaultOrders.count, "RDP curve over the default orders")
        let budget = self.budget
        let outcome: Result<Double, PrivacyLedgerError>
        do {
            // Read, decide and insert in one write transaction: two concurrent charges cannot both pass.
            outcome = try queue.write { db -> Result<Double, PrivacyLedgerError> in
                let spent = try Self.totalRDP(db)
                let before = RDP.epsilon(rdp: spent, delta: budget.delta).epsilon
                let after = RDP.epsilon(rdp: zip(spent, release.rdp).map { $0 + $1 }, delta: budget.delta).epsilon
                guard after <= budget.epsilon else {
                    return .failure(.budgetExceeded(spent: before, wouldBe: after, budget: budget,
                                                    mechanism: release.mechanism))
                }
                let rdp = release.rdp.withUnsafeBytes { Data($0) }
                let created = Int64(Date().timeIntervalSince1970 * 1000)
                let previous = try Data.fetchOne(db, sql: "SELECT entry_hash FROM release ORDER BY id DESC LIMIT 1")
                    .map { [UInt8]($0) } ?? Self.genesis
                let hash = Self.entryHash(previous: previous, round: release.round, mechanism: release.mechanism,
                                          samplingRate: release.samplingRate, noiseMultiplier: release.noiseMultiplier,
                                          rdp: rdp, epsilonAfter: after, createdAtMilliseconds: created)
                let signature = signer.map { key in hash.withUnsafeBytes { key.sign($0) } }
                try db.execute(sql: """
                    INSERT INTO release (round, mechanism, sampling_rate, noise_multiplier, rdp, epsilon_after, created_at_ms,
                                         previous_hash, entry_hash, signature)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [Int64(bitPattern: release.round), release.mechanism, release.samplingRate,
                                     release.noiseMultiplier, rdp, after, created, Data(previous), Data(hash),
                                     signature.map { Data($0) }])
                Failpoint.agentLedgerCharge.reach()
                return .success(after)
            }
        } catch {
            throw .storage(StorageError(path: path, operation: "charge \(release.mechanism)", reason: "\(error)"))
        }
        let spent = try outcome.get()
        do {
            try mark.raise(to: try lastID())
        } catch {
            throw .storage(error)
        }
        return spent
    }

    /// Every release, oldest first.
    package func entries() throws(StorageError) -> [Entry] {
        do {
            return try queue.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM release ORDER BY id").map { row in
                    Entry(id: row["id"], round: UInt64(bitPattern: row["round"] as Int64), mechanism: row["mechanism"],
                          samplingRate: row["sampling_rate"], noiseMultiplier: row["noise_multiplier"],
                          epsilonAfter: row["epsilon_after"], createdAtMilliseconds: row["created_at_ms"])
                }
            }
        } catch {
            throw StorageError(path: path, operation: "read privacy ledger", reason: "\(error)")
        }
    }

    /// ε each mechanism alone would have cost (its releases composed), at the budget's δ.
    package func epsilonByMechanism() throws(StorageError) -> [String: Double] {
        do {
            let curves = try queue.read { db -> [String: [Double]] in
                var curves: [String: [Double]] = [:]
                let rows = try Row.fetchCursor(db, sql: "SELECT mechanism, rdp FROM release")
                while let row = try rows.next() {
                    let curve = Self.curve(row["rdp"])
                    curves[row["mechanism"], default: [Double](repeating: 0, count: curve.count)] =
                        zip(curves[row["mechanism"]] ?? [Double](repeating: 0, count: curve.count), curve).map { $0 + $1 }
                }
                return curves
            }
            return curves.mapValues { RDP.epsilon(rdp: $0, delta: budget.delta).epsilon }
        } catch {
            throw StorageError(path: path, operation: "read privacy ledger", reason: "\(error)")
        }
    }

    /// The id of the newest entry (0 for an empty ledger).
    package func lastID() throws(StorageError) -> Int64 {
        do {
            return try queue.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM release") ?? 0 }
        } catch {
            throw StorageError(path: path, operation: "read privacy ledger", reason: "\(error)")
        }
    }

    /// Every entry after `id`, whole (hashes and signatures), oldest first: a round's receipt.
    package func records(after id: Int64) throws(StorageError) -> [LedgerRecord] {
        do {
            return try queue.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM release WHERE id > ? ORDER BY id", arguments: [id]).map { row in
                    LedgerRecord(id: row["id"], previousHash: [UInt8]((row["previous_hash"] as Data?) ?? Data()),
                                 round: UInt64(bitPattern: row["round"] as Int64), mechanism: row["mechanism"],
                                 samplingRate: row["sampling_rate"], noiseMultiplier: row["noise_multiplier"],
                                 rdp: [UInt8](row["rdp"] as Data), epsilonAfter: row["epsilon_after"],
                                 createdAtMilliseconds: row["created_at_ms"],
                                 hash: [UInt8]((row["entry_hash"] as Data?) ?? Data()),
                                 signature: [UInt8]((row["signature"] as Data?) ?? Data()))
                }
            }
        } catch {
            throw StorageError(path: path, operation: "read privacy ledger", reason: "\(error)")
        }
    }

    /// Why `records` (a receipt) is not a piece of `signer`'s ledger, or nil when it is: every entry's
    /// hash recomputes from its fields, every entry is signed by `signer`, and each links to the one
    /// before it.
    package static func refusal(ofReceipt records: [LedgerRecord], signer: SigningPublicKey) -> String? {
        guard !records.isEmpty else { return "an empty receipt" }
        for (index, record) in records.enumerated() {
            let recomputed = entryHash(previous: record.previousHash, round: record.round, mechanism: record.mechanism,
                                       samplingRate: record.samplingRate, noiseMultiplier: record.noiseMultiplier,
                                       rdp: Data(record.rdp), epsilonAfter: record.epsilonAfter,
                                       createdAtMilliseconds: record.createdAtMilliseconds)
            guard recomputed == record.hash else { return "entry \(record.id): its fields do not match its hash" }
            guard signer.verify(signature: record.signature, of: record.hash) else {
                return "entry \(record.id): not signed by the agent's key"
            }
            if index > 0 {
                guard record.previousHash == records[index - 1].hash, record.id > records[index - 1].id else {
                    return "entry \(record.id) does not follow entry \(records[index - 1].id)"
                }
            }
        }
        return nil
    }

    /// The hash before the first entry.
    static let genesis = [UInt8](repeating: 0, count: Digest.byteCount)

    /// BLAKE2b-256 of the previous hash and every field, in a fixed binary layout.
    static func entryHash(previous: [UInt8], round: UInt64, mechanism: String, samplingRate: Double,
                          noiseMultiplier: Double, rdp: Data, epsilonAfter: Double,
                          createdAtMilliseconds: Int64) -> [UInt8] {
        var bytes = previous
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        append(round)
        append(UInt32(mechanism.utf8.count))
        bytes += Array(mechanism.utf8)
        append(samplingRate.bitPattern)
        append(noiseMultiplier.bitPattern)
        append(UInt32(rdp.count))
        bytes += Array(rdp)
        append(epsilonAfter.bitPattern)
        append(createdAtMilliseconds)
        return Digest.blake2b256(bytes)
    }

    /// What ``verify(signer:)`` found.
    package struct Verification: Sendable, Equatable {
        package var entries: Int
        /// Entries written before the chain existed (ledger format v1), not covered.
        package var unchained: Int
        package var signed: Int
        /// The head: the last entry's hash (hex), empty for an empty ledger.
        package var head: String
        /// The first entry that does not verify and why; nil when the whole chain holds.
        package var broken: Break?

        package struct Break: Sendable, Equatable {
            package var id: Int64
            package var reason: String
        }
    }

    /// Recomputes every link and checks every signature against `signer` (the agent's public key). The
    /// chain is broken by any changed field, a removed, inserted or reordered entry, a signature by
    /// another key, or a signed ledger whose entries are missing their signature.
    ///
    /// The chain alone cannot show that entries were cut from its end (or that the whole ledger was
    /// replaced by an empty one): give `knownHead`, a head recorded earlier (hex, or a prefix of it), and
    /// the chain must still contain it.
    package func verify(signer: SigningPublicKey?, knownHead: String? = nil) throws(StorageError) -> Verification {
        do {
            return try queue.read { db in
                var result = Verification(entries: 0, unchained: 0, signed: 0, head: "", broken: nil)
                var previous = Self.genesis
                var chainStarted = false
                var sawKnownHead = knownHead == nil
                let rows = try Row.fetchCursor(db, sql: "SELECT * FROM release ORDER BY id")
                while let row = try rows.next() {
                    result.entries += 1
                    let id: Int64 = row["id"]
                    guard let stored = (row["entry_hash"] as Data?).map({ [UInt8]($0) }) else {
                        if chainStarted {
                            result.broken = result.broken ?? Verification.Break(id: id, reason: "an entry without a hash after the chain began")
                        }
                        result.unchained += 1
                        continue
                    }
                    let link = (row["previous_hash"] as Data?).map { [UInt8]($0) } ?? []
                    // The first chained entry links to the genesis hash, even after v1 entries.
                    let expectedPrevious = chainStarted ? previous : Self.genesis
                    chainStarted = true
                    let recomputed = Self.entryHash(
                        previous: link, round: UInt64(bitPattern: row["round"] as Int64), mechanism: row["mechanism"],
                        samplingRate: row["sampling_rate"], noiseMultiplier: row["noise_multiplier"], rdp: row["rdp"],
                        epsilonAfter: row["epsilon_after"], createdAtMilliseconds: row["created_at_ms"])
                    if result.broken == nil {
                        if link != expectedPrevious {
                            result.broken = Verification.Break(
                                id: id, reason: "it does not link to the entry before it (an entry was removed, inserted or reordered)")
                        } else if recomputed != stored {
                            result.broken = Verification.Break(id: id, reason: "its fields do not match its hash (the entry was changed)")
                        } else if let signer {
                            if let signature = (row["signature"] as Data?).map({ [UInt8]($0) }) {
                                if signer.verify(signature: signature, of: stored) {
                                    result.signed += 1
                                } else {
                                    result.broken = Verification.Break(id: id, reason: "its signature is not the agent's")
                                }
                            } else {
                                result.broken = Verification.Break(id: id, reason: "it is not signed")
                            }
                        }
                    }
                    previous = stored
                    if let knownHead, !knownHead.isEmpty,
                       Digest.hex(stored).hasPrefix(knownHead.lowercased()) {
                        sawKnownHead = true
                    }
                }
                if !sawKnownHead && result.broken == nil {
                    result.broken = Verification.Break(
                        id: Int64(result.entries), reason: "the recorded head \(knownHead ?? "") is not in the chain "
                            + "(entries were removed from its end, or the ledger was replaced)")
                }
                result.head = chainStarted ? Digest.hex(previous) : ""
                return result
            }
        } catch {
            throw StorageError(path: path, operation: "verify privacy ledger", reason: "\(error)")
        }
    }

    private static func totalRDP(_ db: Database) throws -> [Double] {
        var total = [Double](repeating: 0, count: RDP.defaultOrders.count)
        let rows = try Row.fetchCursor(db, sql: "SELECT rdp FROM release")
        while let row = try rows.next() {
            for (index, value) in curve(row["rdp"]).enumerated() where index < total.count { total[index] += value }
        }
        return total
    }

    private static func curve(_ data: Data) -> [Double] { data.doubles }
}
