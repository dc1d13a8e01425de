@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
import Foundation
import TestSupport
import Testing

extension ScaleOutTests {
    /// Hierarchical aggregation with real processes: a global `aggregator`, a regional `aggregator` enrolled in it as
    /// one agent (`upstream:`), and three `edge-agent`s enrolled in the region. Each global round runs one regional
    /// round with the global model and plan; the region forwards its agents' sum as its one update.
    @Suite("Hierarchical aggregation: a regional aggregator as an agent of the global one", .serialized,
           .timeLimit(.minutes(6)))
    struct HierarchicalAggregationTests {
        static let agents = [(id: "region-1", users: 40), (id: "region-2", users: 60), (id: "region-3", users: 30)]

        /// The region (`aggregator.yaml`) with the three agents, and the global aggregator (`global.yaml`, ports P+2,
        /// P+3) with the region enrolled as `eu` under the regional aggregator's own key. `budgets` nil: NON-PRIVATE.
        static func tree(regional: String, global: String, budgets: [String: Double]?) async throws -> Federation {
            let federation = try await Federation(agents: agents, enrolled: agents.map(\.id), aggregatorSettings: regional,
                                                  budgets: budgets)
            let keygen = try federation.start("aggregator", ["keygen", "--out", "keys/global"])
            #expect(await keygen.waitForExit(seconds: 30) == 0, "\(keygen.output)")
            let port = federation.port
            try """
                listen: tcp://127.0.0.1:\(port + 2)
                announce: tcp://127.0.0.1:\(port + 3)
                key_directory: keys/global
                state_directory: state-global
                \(budgets == nil ? "non_private: true" : "")
                agents:
                  - id: eu
                    public_key_file: keys/aggregator/identity.public

                """.appending(global).write(toFile: federation.path("global.yaml"), atomically: true, encoding: .utf8)
            try """
                id: eu
                aggregator: tcp://127.0.0.1:\(port + 2)
                announcements: tcp://127.0.0.1:\(port + 3)
                aggregator_public_key_file: keys/global/identity.public
                key_directory: keys/aggregator
                data_directory: state/upstream
                \(budgets == nil ? "non_private: true" : "privacy: {epsilon: 1000, delta: 1.0e-6}")

                """.write(toFile: federation.path("upstream-eu.yaml"), atomically: true, encoding: .utf8)
            try federation.appendLines("upstream: upstream-eu.yaml\n", to: "aggregator.yaml")
            return federation
        }

        /// Runs the tree for `rounds` global rounds; returns the global and regional aggregators' processes.
        static func run(_ federation: Federation, rounds: Int) async throws -> (global: ChildProcess, region: ChildProcess,
                                                                                agents: [ChildProcess]) {
            let global = try federation.start("aggregator", ["run", "--config", "global.yaml", "--rounds", "\(rounds)"])
            let region = try federation.start("aggregator", ["run", "--config", "aggregator.yaml"])
            let agents = try Self.agents.map { try federation.start("edge-agent", ["run", "--config", "\($0.id).yaml"]) }
            #expect(await global.waitForExit(seconds: 240) == 0, "\(global.output)\n--- region:\n\(region.output)")
            for process in [region] + agents {
                process.terminate()
                _ = await process.waitForExit(seconds: 20)
            }
            return (global, region, agents)
        }

        /// Every user sampled, no noise, plain FedAvg at the global aggregator: each global model must be exactly the
        /// user-weighted average of all three agents' clipped deltas — what a flat federation of the three computes —
        /// which the test recomputes from the agents' stores. With the region's secure aggregation the sum is on a
        /// grid of S/2²⁰ (the same tolerance as the flat secure test).
        @Test("Through a regional aggregator (plain, and with secure aggregation in the region), each global model equals the average of all the agents' updates that the test recomputes from their data",
              arguments: [false, true])
        func treeMatchesFlatAverage(secure: Bool) async throws {
            let regional = """
                rounds: {min_agents: 3, timeout_seconds: 60, sampling_rate: 1.0, clip_norm: 0.5, learning_rate: 0.5, sequence_length: 20}
                secure_aggregation: \(secure ? "{enabled: true, threshold: 2, max_users: 200}" : "{enabled: false}")

                """
            let global = """
                rounds: {min_agents: 1, timeout_seconds: 60, sampling_rate: 1.0, clip_norm: 0.5, learning_rate: 0.5, sequence_length: 20}
                server_optimizer: {kind: sgd, learning_rate: 1.0}
                secure_aggregation: {enabled: false}

                """
            let federation = try await Self.tree(regional: regional, global: global, budgets: nil)
            let (globalProcess, region, agents) = try await Self.run(federation, rounds: 2)
            let lines = globalProcess.lines(startingWith: "round ")
            print("tree (secure region: \(secure)): global \(lines); region \(region.lines(startingWith: "round "))")
            #expect(lines.count == 2 && lines.allSatisfy { $0.contains("accepted 1") && $0.contains("aggregated") },
                    "the region's one update each round: \(lines)")
            let regionalLines = region.lines(startingWith: "round ")
            #expect(regionalLines.count >= 2 && regionalLines.prefix(2).allSatisfy { $0.contains("accepted 3") && $0.contains("sum forwarded upstream") },
                    "every agent in every regional round: \(regionalLines) \(region.output)")
            #expect(region.output.components(separatedBy: "Regional round for the global aggregator's round").count - 1 >= 2)
            #expect(region.output.contains("Secure aggregation: sum unmasked") == secure, "\(region.output)")
            #expect(agents.allSatisfy { !$0.output.contains("Update refused") })

            let catalog = try CategoryCatalog.read(from: federation.path("catalog.txt"))
            let hyperparameters = RoundHyperparameters(samplingRate: 1, clipNorm: 0.5, noiseMultiplier: 0, learningRate: 0.5,
                                                       localSteps: 1, sequenceLength: 20)
            for version in 0..<2 {
                let before = try ModelFile.read(from: federation.path("state-global/models/model-v\(version).fdlm"))
                let after = try ModelFile.read(from: federation.path("state-global/models/model-v\(version + 1).fdlm"))
                let (worst, users) = try FederationTests.differenceFromIndependentAverage(
                    federation, agents: Self.agents.map(\.id), catalog: catalog, hyperparameters: hyperparameters,
                    before: before.parameters, after: after.parameters)
                #expect(users > 100)
                #expect(worst < 1e-6, "global model v\(version + 1) differs from the flat average by \(worst)")
                #expect(before.parameters.values != after.parameters.values)
            }
        }

        /// Private throughout: the agents noise and charge their own ledgers; the region charges its ledger once per
        /// global round before forwarding (its receipt is what the global aggregator verifies); the global aggregator
        /// accepts the region's update only with that receipt.
        @Test("Private tree: every agent charges each regional round once, the region charges each global round once before forwarding, and the global aggregator accepts the region's receipts")
        func privateTree() async throws {
            let regional = """
                rounds: {min_agents: 3, timeout_seconds: 60, sampling_rate: 0.5, clip_norm: 1.0, noise_multiplier: 1.0, sequence_length: 20, expected_users: 130}
                secure_aggregation: {enabled: true, threshold: 2, max_users: 200}

                """
            let global = """
                rounds: {min_agents: 1, timeout_seconds: 20, sampling_rate: 0.5, clip_norm: 1.0, noise_multiplier: 1.0, sequence_length: 20, expected_users: 130}
                secure_aggregation: {enabled: false}

                """
            let budgets = Dictionary(uniqueKeysWithValues: Self.agents.map { ($0.id, 1_000.0) })
            let federation = try await Self.tree(regional: regional, global: global, budgets: budgets)
            let (globalProcess, region, _) = try await Self.run(federation, rounds: 2)
            let lines = globalProcess.lines(startingWith: "round ")
            #expect(lines.count == 2 && lines.allSatisfy { $0.contains("accepted 1") && $0.contains("aggregated") }, "\(lines)")
            #expect(!globalProcess.output.contains("Ledger receipt refused"), "\(globalProcess.output)")
            let regionLedger = try PrivacyLedger(path: federation.path("state/upstream/privacy.sqlite"),
                                                 budget: PrivacyBudget(epsilon: 1_000, delta: 1e-6))
            let regionCharges = try regionLedger.entries().filter { $0.mechanism.hasPrefix("model_update") }.map(\.round)
            #expect(regionCharges == [1, 2], "the region charges each global round once: \(regionCharges) \(region.output)")
            let regionalRounds = region.lines(startingWith: "round ").count
            for agent in Self.agents {
                let charges = try FaultInjectionTests.updateCharges(federation, agent.id)
                #expect(Set(charges).count == charges.count && charges.count == regionalRounds,
                        "\(agent.id) charges each regional round once: \(charges), \(regionalRounds) regional rounds")
            }
        }
    }
}
