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
            budget's δ. Safe to run while the agent runs.
            """
    )

    @Option(name: .long, help: "The agent's YAML configuration.")
    var config: String

    @Flag(name: .long, help: "One JSON object.")
    var json = false

    func run() throws {
        let configuration = try EdgeAgentConfiguration.load(path: config)
        guard FileManager.default.fileExists(atPath: configuration.ledgerPath) else {
            throw ValidationError("no ledger at \(configuration.ledgerPath): this agent has released nothing yet")
        }
        let ledger = try PrivacyLedger(path: configuration.ledgerPath, budget: configuration.budget)
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
              + (configuration.privacy == nil ? "  (no budget configured: releases are not limited)" : ""))
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
