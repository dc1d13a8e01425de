@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import TestSupport
import Testing

/// Audit 6: the budget is a hard limit, and the ledger is never behind what left the agent.
@Suite("Audit 6: budget exhaustion and a ledger that survives SIGKILL", .serialized, .timeLimit(.minutes(4)))
struct BudgetAuditTests {
    static let rounds = """
        rounds: {min_agents: 1, timeout_seconds: 12, sampling_rate: 0.5, clip_norm: 1.0, noise_multiplier: 1.0, sequence_length: 20, expected_users: 60}

        """

    /// Budget for exactly three model updates at q = 0.5, z = 1 (δ = 1e-6), plus a hair.
    /// (The agent's update is the discrete Gaussian on the quantised sum of the default small model.)
    static let budget = RDP.epsilon(rdp: RoundReleasePlan(samplingRate: 0.5, noiseMultiplier: 1.0,
                                                          dimension: LSTMShape.small.layout.count).rdp(rounds: 3),
                                    delta: 1e-6).epsilon * 1.0001

    @Test("Audit 6: an agent whose next release would exceed its budget stops training and releasing, says so, and keeps running")
    func exhaustionStopsReleases() async throws {
        let agents = [(id: "region-1", users: 30), (id: "region-2", users: 30)]
        let federation = try await Federation(agents: agents, enrolled: agents.map(\.id), aggregatorSettings: Self.rounds,
                                              budgets: ["region-1": Self.budget])
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml", "--rounds", "6"])
        let limited = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        let other = try federation.start("edge-agent", ["run", "--config", "region-2.yaml"])
        defer { [limited, other].forEach { $0.terminate() } }
        #expect(await aggregator.waitForExit(seconds: 180) == 0, "\(aggregator.output)")
        #expect(limited.output.contains("Privacy budget exhausted"), "\(limited.output)")
        #expect(limited.output.contains("Not taking part in this round: training stopped"))
        #expect(limited.process.isRunning, "the agent keeps running (ingesting and scoring)")

        let ledger = try PrivacyLedger(path: federation.path("data/region-1/privacy.sqlite"),
                                       budget: PrivacyBudget(epsilon: Self.budget, delta: 1e-6))
        let updates = try ledger.entries().filter { $0.mechanism == "model_update" }
        #expect(updates.count == 3)
        #expect(try ledger.spentEpsilon() <= Self.budget)
        let status = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: federation.path("state/status.json"))))
            as? [String: Any]
        let record = (status?["agents"] as? [String: Any])?["region-1"] as? [String: Any]
        #expect(record?["accepted"] as? Int == 3, "the aggregator used exactly the charged updates: \(String(describing: record))")
        let agentStatus = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(
            fileURLWithPath: federation.path("data/region-1/status.json")))) as? [String: Any]
        #expect(agentStatus?["participating"] as? Bool == false)
        // The operator's view.
        let report = try federation.start("edge-agent", ["privacy", "--config", "region-1.yaml"])
        #expect(await report.waitForExit(seconds: 30) == 0)
        #expect(report.output.contains("over 3 releases"), "\(report.output)")
        // The real agent signed every entry it charged: the chain verifies against its public key.
        let verify = try federation.start("edge-agent", ["privacy", "--config", "region-1.yaml", "--verify"])
        #expect(await verify.waitForExit(seconds: 30) == 0, "\(verify.output)")
        #expect(verify.output.contains("chain intact — 3 entries, 3 signed"), "\(verify.output)")
        // The aggregator accepted each update with its verified ledger receipt and kept the newest entry seen.
        #expect(record?["ledger_sequence"] as? Int == 3, "\(String(describing: record))")
    }

    @Test("Audit 6: killed with SIGKILL at arbitrary moments, the agent's ledger never counts fewer releases than the aggregator received")
    func ledgerSurvivesSigkill() async throws {
        let agents = [(id: "region-1", users: 150)]
        let federation = try await Federation(agents: agents, enrolled: ["region-1"], aggregatorSettings: """
            rounds: {min_agents: 1, timeout_seconds: 12, sampling_rate: 0.5, clip_norm: 1.0, noise_multiplier: 1.0, sequence_length: 20, expected_users: 150}

            """, budgets: [:])
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml"])
        defer { aggregator.terminate() }
        var random = SplitMix64(seed: UInt64(Date().timeIntervalSince1970))
        for kill in 0..<4 {
            let agent = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
            #expect(await agent.waitForOutput("Round open: training", seconds: 60), "\(agent.output)")
            // Somewhere in training, noising, charging, holding until the cutoff (≈ 9.6 s), sending or waiting.
            try await Task.sleep(for: .milliseconds(Int(random.next() % 11_000)))
            agent.kill()
            _ = kill
        }
        let agent = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        #expect(await agent.waitForOutput("Update accepted by the aggregator", seconds: 60), "\(agent.output)")
        agent.kill()
        aggregator.terminate()
        #expect(await aggregator.waitForExit(seconds: 30) != nil)

        let ledger = try PrivacyLedger(path: federation.path("data/region-1/privacy.sqlite"),
                                       budget: PrivacyBudget(epsilon: 1000, delta: 1e-6))
        let charged = try ledger.entries().filter { $0.mechanism == "model_update" }
        let status = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: federation.path("state/status.json"))))
            as? [String: Any]
        let accepted = ((status?["agents"] as? [String: Any])?["region-1"] as? [String: Any])?["accepted"] as? Int ?? 0
        #expect(accepted >= 1)
        #expect(charged.count >= accepted, "ledger \(charged.count) < accepted \(accepted): under-count")
        // Every accepted round has its charge (re-sends after a restart are the same release, not a new one).
        let chargedRounds = Set(charged.map(\.round))
        #expect(chargedRounds.count >= accepted)
    }
}
