@testable import FedIO
@testable import FedLogic
@testable import FedNode
import Foundation
import GRDB
import Testing

/// Audit 9: the privacy ledger is a hash chain signed by the agent, so what it says was charged cannot be
/// quietly rewritten by someone holding the file but not the agent's key.
@Suite("Audit 9: a signed, hash-chained privacy ledger")
struct LedgerAuditTests {
    /// A ledger of five releases signed by a fresh agent key, in its own directory.
    static func ledger() throws -> (path: String, key: NodeIdentity, head: String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-ledger-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("privacy.sqlite").path
        let key = NodeIdentity()
        let ledger = try PrivacyLedger(path: path, budget: PrivacyBudget(epsilon: 100, delta: 1e-6), signer: key.signing)
        for round in 1...5 {
            try ledger.charge(.subsampledGaussian(mechanism: "model_update", round: UInt64(round), q: 0.1, noiseMultiplier: 1))
        }
        return (path, key, try ledger.verify(signer: key.signing.publicKey).head)
    }

    static func verify(_ path: String, _ key: NodeIdentity, knownHead: String? = nil) throws -> PrivacyLedger.Verification {
        try PrivacyLedger(path: path, budget: PrivacyBudget(epsilon: 100, delta: 1e-6))
            .verify(signer: key.signing.publicKey, knownHead: knownHead)
    }

    static func tamper(_ path: String, _ sql: String) throws {
        let queue = try DatabaseQueue(path: path)
        try queue.write { try $0.execute(sql: sql) }
    }

    /// Claim: a receipt (the entries a round charged) verifies against the agent's key only as written:
    /// a changed field, a foreign signature or a missing entry between two is refused. Control: as written.
    @Test("Audit 9: a round's ledger receipt verifies as written and is refused when changed, re-signed by another key or gapped")
    func receiptsVerify() throws {
        let (path, key, _) = try Self.ledger()
        let ledger = try PrivacyLedger(path: path, budget: PrivacyBudget(epsilon: 100, delta: 1e-6))
        let receipt = try ledger.records(after: 2)
        #expect(receipt.map(\.id) == [3, 4, 5])
        #expect(PrivacyLedger.refusal(ofReceipt: receipt, signer: key.signing.publicKey) == nil)
        var lowered = receipt
        lowered[1].noiseMultiplier = 9
        #expect(PrivacyLedger.refusal(ofReceipt: lowered, signer: key.signing.publicKey) != nil)
        #expect(PrivacyLedger.refusal(ofReceipt: receipt, signer: NodeIdentity().signing.publicKey) != nil)
        #expect(PrivacyLedger.refusal(ofReceipt: [receipt[0], receipt[2]], signer: key.signing.publicKey) != nil)
        #expect(try ledger.lastID() == 5)
    }

    /// Claim: every change that does not come from the agent's key is detected, with the entry named; the
    /// untouched ledger (the control) verifies, so the check is not vacuous. Deterministic: no false failure.
    @Test("Audit 9: edits, re-hashed edits, deletions, reordering, a foreign key and a cut tail are detected; the untouched ledger verifies")
    func tamperingIsDetected() throws {
        let (path, key, head) = try Self.ledger()
        let clean = try Self.verify(path, key, knownHead: head)
        #expect(clean.broken == nil && clean.entries == 5 && clean.signed == 5, "\(clean)")

        // An attacker lowers what an entry charged.
        var (p, k, _) = try Self.ledger()
        try Self.tamper(p, "UPDATE release SET epsilon_after = 0.01, noise_multiplier = 9 WHERE id = 3")
        #expect(try Self.verify(p, k).broken?.id == 3)

        // … and recomputes the hashes of that entry and every later one (no key needed for that).
        (p, k, _) = try Self.ledger()
        try Self.tamper(p, "UPDATE release SET noise_multiplier = 9 WHERE id = 3")
        let queue = try DatabaseQueue(path: p)
        try queue.write { db in
            var previous = try Data.fetchOne(db, sql: "SELECT entry_hash FROM release WHERE id = 2").map { [UInt8]($0) } ?? []
            for row in try Row.fetchAll(db, sql: "SELECT * FROM release WHERE id >= 3 ORDER BY id") {
                let hash = PrivacyLedger.entryHash(
                    previous: previous, round: UInt64(bitPattern: row["round"] as Int64), mechanism: row["mechanism"],
                    samplingRate: row["sampling_rate"], noiseMultiplier: row["noise_multiplier"], rdp: row["rdp"],
                    epsilonAfter: row["epsilon_after"], createdAtMilliseconds: row["created_at_ms"])
                try db.execute(sql: "UPDATE release SET previous_hash = ?, entry_hash = ? WHERE id = ?",
                               arguments: [Data(previous), Data(hash), row["id"] as Int64])
                previous = hash
            }
        }
        #expect(try Self.verify(p, k).broken?.reason.contains("signature") == true)

        // An entry removed from the middle.
        (p, k, _) = try Self.ledger()
        try Self.tamper(p, "DELETE FROM release WHERE id = 2")
        #expect(try Self.verify(p, k).broken?.id == 3)

        // Two entries swapped.
        (p, k, _) = try Self.ledger()
        try Self.tamper(p, "UPDATE release SET id = 100 WHERE id = 2; UPDATE release SET id = 2 WHERE id = 4; UPDATE release SET id = 4 WHERE id = 100")
        #expect(try Self.verify(p, k).broken != nil)

        // Signed by someone else.
        (p, k, _) = try Self.ledger()
        #expect(try Self.verify(p, NodeIdentity()).broken?.reason.contains("not the agent's") == true)

        // The last entries cut off: the chain itself still holds; the head recorded before does not.
        let recorded: String
        (p, k, recorded) = try Self.ledger()
        try Self.tamper(p, "DELETE FROM release WHERE id >= 4")
        // The high-water mark kept beside the ledger refuses it at open, naming the file …
        #expect {
            _ = try Self.verify(p, k)
        } throws: { error in
            (error as? StorageError).map { $0.path == p && $0.reason.contains("held 5") } ?? false
        }
        // … and with the mark removed too, the chain itself still holds; only a head recorded before tells.
        try FileManager.default.removeItem(atPath: p + ".highwater")
        #expect(try Self.verify(p, k).broken == nil, "a cut tail is invisible to the chain without a recorded head")
        #expect(try Self.verify(p, k, knownHead: String(recorded.prefix(16))).broken != nil)
    }
}
