@testable import FedLogic
@testable import FedNode
import Foundation
import TestSupport
import Testing

/// Audit 8: privacy is on unless both sides opt out, and the agent — not the aggregator — decides.
@Suite("Audit 8: fail closed", .serialized, .timeLimit(.minutes(3)))
struct FailClosedAuditTests {
    /// Claim: an agent with a budget releases nothing in rounds whose announced noise is below its
    /// floor, however the aggregator is configured; it logs why, counts the refusals in status.json and
    /// charges nothing. The NON-PRIVATE aggregator says so in its log and on every progress line.
    /// Control: the same agent configured `non_private: true` takes part in the same rounds.
    @Test("Audit 8: a budgeted agent refuses every round of a NON-PRIVATE aggregator and says why; a non_private agent takes part")
    func budgetedAgentRefusesNoiselessRounds() async throws {
        let federation = try await Federation(agents: [(id: "region-1", users: 10)], enrolled: ["region-1"],
                                              aggregatorSettings: """
            non_private: true
            rounds: {min_agents: 1, timeout_seconds: 3, sampling_rate: 0.5, sequence_length: 20}

            """, budgets: [:])
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml", "--rounds", "2"])
        let agent = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        defer { agent.terminate() }
        #expect(await aggregator.waitForExit(seconds: 90) == 0, "\(aggregator.output)")
        #expect(aggregator.output.contains("NON-PRIVATE: non_private is true"), "\(aggregator.output)")
        let rounds = aggregator.lines(startingWith: "round ")
        #expect(rounds.count == 2 && rounds.allSatisfy { $0.contains("NON-PRIVATE") && $0.contains("FAILED quorum") },
                "\(rounds)")
        #expect(await agent.waitForOutput("Round refused", seconds: 10), "\(agent.output)")
        #expect(agent.output.contains("below this agent's min_noise_multiplier"), "\(agent.output)")
        let status = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(
            fileURLWithPath: federation.path("data/region-1/status.json")))) as? [String: Any]
        #expect((status?["refused_rounds"] as? Int ?? 0) >= 1, "\(String(describing: status))")
        #expect((status?["privacy"] as? [String: Any])?["mode"] as? String == "private")
        let ledger = try PrivacyLedger(path: federation.path("data/region-1/privacy.sqlite"),
                                       budget: PrivacyBudget(epsilon: 1000, delta: 1e-6))
        #expect(try ledger.entries().isEmpty, "refused rounds charge nothing")
        agent.terminate()
        _ = await agent.waitForExit(seconds: 10)

        // Control: opting out on the agent's side too makes the same rounds go through, labelled.
        let text = try String(contentsOfFile: federation.path("region-1.yaml"), encoding: .utf8)
        try text.split(separator: "\n").map { $0.hasPrefix("privacy:") ? "non_private: true" : String($0) }
            .joined(separator: "\n").appending("\n").write(toFile: federation.path("region-1.yaml"), atomically: true, encoding: .utf8)
        let again = try federation.start("aggregator", ["run", "--config", "aggregator.yaml", "--rounds", "4"])
        let open = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        defer { open.terminate() }
        #expect(await again.waitForExit(seconds: 90) == 0, "\(again.output)")
        #expect(again.lines(startingWith: "round ").contains { $0.contains("aggregated") }, "\(again.output)")
        #expect(open.output.contains("NON-PRIVATE"), "\(open.output)")
        let after = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(
            fileURLWithPath: federation.path("data/region-1/status.json")))) as? [String: Any]
        #expect((after?["privacy"] as? [String: Any])?["mode"] as? String == "NON-PRIVATE")
    }

    /// Claim: neither binary starts without privacy or the explicit opt-out, and each names the key.
    @Test("Audit 8: without a budget or noise the binaries refuse to start and name the key to set")
    func refuseToStart() async throws {
        let federation = try await Federation(agents: ["region-1"], enrolled: ["region-1"])
        for file in ["aggregator.yaml", "region-1.yaml"] {
            let text = try String(contentsOfFile: federation.path(file), encoding: .utf8)
            try text.replacingOccurrences(of: "non_private: true", with: "")
                .write(toFile: federation.path(file), atomically: true, encoding: .utf8)
        }
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml"])
        #expect(await aggregator.waitForExit(seconds: 30) != 0)
        #expect(aggregator.output.contains("rounds.expected_users") || aggregator.output.contains("noise_multiplier"),
                "\(aggregator.output)")
        let agent = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        #expect(await agent.waitForExit(seconds: 30) != 0)
        #expect(agent.output.contains("'privacy'") && agent.output.contains("non_private: true"), "\(agent.output)")
    }
}
