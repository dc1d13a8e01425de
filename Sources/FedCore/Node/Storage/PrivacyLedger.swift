import FedIO
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

    package init(path: String, budget: PrivacyBudget) throws(StorageError) {
        self.path = path
        self.budget = budget
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
        }
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
                try db.execute(sql: """
                    INSERT INTO release (round, mechanism, sampling_rate, noise_multiplier, rdp, epsilon_after, created_at_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [Int64(bitPattern: release.round), release.mechanism, release.samplingRate,
                                     release.noiseMultiplier, rdp, after, Int64(Date().timeIntervalSince1970 * 1000)])
                return .success(after)
            }
        } catch {
            throw .storage(StorageError(path: path, operation: "charge \(release.mechanism)", reason: "\(error)"))
        }
        return try outcome.get()
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
