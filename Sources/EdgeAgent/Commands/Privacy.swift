import ArgumentParser
import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation

struct Privacy: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show this agent's privacy ledger: budget, ε spent and remaining, per mechanism and per round.",
        discussion: """
            Every release that leaves the agent (model updates, held-out evaluations, drift histograms) is \
            charged to data_directory/privacy.sqlite before it is sent; ε is of all releases composed, at the \
            budget's δ. Safe to run while the agent runs. The ledger is a hash chain signed by the agent: \
            --verify recomputes every link and checks every signature against key_directory/identity.public, \
            and exits non-zero if an entry was changed, removed, inserted or reordered.
            """
    )

    @Option(name: .long, help: "The agent's YAML configuration.")
    var config: String

    @Flag(name: .long, help: "One JSON object.")
    var json = false

    @Flag(name: .long, help: "Verify the ledger's signed hash chain (exit status 1 if it is broken).")
    var verify = false

    @Option(name: .long, help: "With --verify: a head printed by an earlier --verify (hex prefix); the chain must still contain it.")
    var head: String?

    func run() throws {
        let configuration = try EdgeAgentConfiguration.load(path: config)
        guard FileManager.default.fileExists(atPath: configuration.ledgerPath) else {
            throw ValidationError("no ledger at \(configuration.ledgerPath): this agent has released nothing yet")
        }
        let ledger = try PrivacyLedger(path: configuration.ledgerPath, budget: configuration.budget)
        if verify {
            let key = try KeyDirectory.readPublicIdentity(
                file: (configuration.keyDirectory as NSString).appendingPathComponent("identity.public")).signing
            let result = try ledger.verify(signer: key, knownHead: head)
            if let broken = result.broken {
                print("Privacy ledger \(configuration.ledgerPath): BROKEN at entry \(broken.id) of \(result.entries): \(broken.reason).")
                throw ExitCode(1)
            }
            print("Privacy ledger \(configuration.ledgerPath): chain intact — \(result.entries) entries, \(result.signed) "
                  + "signed by \(key.description)" + (result.unchained > 0 ? ", \(result.unchained) from before chaining" : "")
                  + (result.head.isEmpty ? "" : "; head \(result.head.prefix(16))…"))
            return
        }
        let entries = try ledger.entries()
        let spent = try ledger.spentEpsilon()
        let byMechanism = try ledger.epsilonByMechanism()
        let budget = configuration.budget
        let remaining = max(0, budget.epsilon - spent)
        if json {
            let object: [String: Any] = [
                "epsilon_budget": budget.epsilon.isFinite ? budget.epsilon : NSNull(), "delta": budget.delta,
                "epsilon_spent": spent.isFinite ? spent : NSNull(),
                "epsilon_remaining": remaining.isFinite ? remaining : NSNull(), "releases": entries.count,
                "epsilon_by_mechanism": byMechanism.mapValues { $0.isFinite ? $0 : -1 },
                "rounds": entries.map { ["round": $0.round, "mechanism": $0.mechanism, "sampling_rate": $0.samplingRate,
                                         "noise_multiplier": $0.noiseMultiplier,
                                         "epsilon_after": $0.epsilonAfter.isFinite ? $0.epsilonAfter : -1] as [String: Any] },
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        func show(_ value: Double) -> String { value.isFinite ? String(format: "%.4f", value) : "∞" }
        print("Privacy ledger \(configuration.ledgerPath) — agent \(configuration.id)")
        print("  budget:    ε = \(show(budget.epsilon)) at δ = \(budget.delta)"
              + (configuration.nonPrivate ? "  (NON-PRIVATE: non_private is true; releases are recorded, not limited)" : ""))
        print("  spent:     ε = \(show(spent)) over \(entries.count) releases")
        print("  remaining: ε = \(show(remaining))")
        print("  per mechanism (each alone, composed over its releases):")
        for (mechanism, value) in byMechanism.sorted(by: { $0.key < $1.key }) {
            print("    \(mechanism): ε = \(show(value)) over \(entries.filter { $0.mechanism == mechanism }.count) releases")
        }
        print("  per round:")
        for entry in entries {
            print(String(format: "    round %llu  %-14@ q = %-8g z = %-8g ε after = %@", entry.round, entry.mechanism,
                         entry.samplingRate, entry.noiseMultiplier, show(entry.epsilonAfter)))
        }
    }
}
