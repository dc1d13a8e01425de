@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
import Foundation
import TestSupport
import Testing

/// Demand counts between real processes: private agents with `trends: {release: true}` release noised
/// demand counts each round, charged to their ledgers before they leave at the accounted multiplier
/// `privacy-plan` plans; the aggregator takes one per agent and round and records in its history how
/// many regions it analysed.
@Suite("Demand counts from private agents to the aggregator's trend detector", .serialized, .timeLimit(.minutes(4)))
struct DemandTrendIntegrationTests {
    @Test("Each round each agent's demand counts are charged (q of the round, z / √(k+1)) and reach the aggregator's detector; the plan composes them")
    func demandCountsAreChargedAndAnalysed() async throws {
        let agents = [(id: "region-1", users: 30), (id: "region-2", users: 30)]
        let federation = try await Federation(agents: agents, enrolled: agents.map(\.id), aggregatorSettings: """
            rounds: {min_agents: 2, timeout_seconds: 10, sampling_rate: 0.5, clip_norm: 1.0, noise_multiplier: 1.0, sequence_length: 20, expected_users: 60}

            """, budgets: ["region-1": 1_000, "region-2": 1_000])
        for agent in agents {
            try federation.appendLines("trends: {release: true, noise_multiplier: 2.0}\n", to: "\(agent.id).yaml")
        }
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml", "--rounds", "3"])
        let processes = try agents.map { try federation.start("edge-agent", ["run", "--config", "\($0.id).yaml"]) }
        defer { processes.forEach { $0.terminate() } }
        #expect(await aggregator.waitForExit(seconds: 180) == 0, "\(aggregator.output)")
        #expect(processes[0].output.contains("Demand counts released each round"), "\(processes[0].output)")

        let expected = QuantisedRelease.accountedSumsNoiseMultiplier(2, count: CategoryDemand.categoriesPerShopper + 1)
        for agent in agents {
            let ledger = try PrivacyLedger(path: federation.path("data/\(agent.id)/privacy.sqlite"),
                                           budget: PrivacyBudget(epsilon: 1_000, delta: 1e-6))
            let demand = try ledger.entries().filter { $0.mechanism == "demand_counts" }
            let updates = try ledger.entries().filter { $0.mechanism.hasPrefix("model_update") }
            // One demand release with every update charged; a round an agent finished past its deadline (a
            // loaded machine) charges and releases neither.
            #expect(demand.count == updates.count && demand.count >= 1, "one demand release per update: \(demand.count), \(updates.count)")
            #expect(demand.allSatisfy { $0.samplingRate == 0.5 && abs($0.noiseMultiplier - expected) < 1e-12 }, "\(demand)")
        }
        let history = try String(contentsOfFile: federation.path("state/history.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONDecoder().decode(RoundHistoryEntry.self, from: Data($0.utf8)) }
        #expect(history.count == 3 && history.contains { $0.demandRegions == 2 }
                && history.allSatisfy { ($0.demandRegions ?? 0) <= 2 }, "\(history.map(\.demandRegions))")
        #expect(!aggregator.output.contains("Demand counts refused"), "\(aggregator.output)")

        // The plan composes the same release: its accounted multiplier is the ledger's.
        let plan = try federation.start("aggregator", ["privacy-plan", "--config", "aggregator.yaml",
                                                       "--agent-config", "region-1.yaml", "--rounds", "3", "--json"])
        #expect(await plan.waitForExit(seconds: 30) == 0, "\(plan.output)")
        let object = try JSONSerialization.jsonObject(with: Data(plan.output.utf8)) as? [String: Any]
        let multipliers = object?["accounted_noise_multipliers"] as? [String: Double]
        #expect(multipliers?["demand_counts"].map { abs($0 - expected) < 1e-12 } == true, "\(plan.output)")
        // Control: without trends.release the same plan has no demand release.
        let other = try federation.start("aggregator", ["privacy-plan", "--config", "aggregator.yaml", "--rounds", "3",
                                                        "--delta", "1e-6", "--json"])
        #expect(await other.waitForExit(seconds: 30) == 0)
        #expect(!other.output.contains("demand_counts"), "\(other.output)")
    }
}
