@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import TestSupport
import Testing

/// Federated rounds between real `aggregator` and `edge-agent` processes on 127.0.0.1, on shoppers
/// made by the built-in simulator.
@Suite("Federated rounds between real processes", .serialized, .timeLimit(.minutes(4)))
struct FederationTests {
    /// Plain FedAvg (server SGD with learning rate 1), every user sampled (q = 1), no noise: the new
    /// model is exactly the user-weighted average of the agents' clipped deltas, which the test can
    /// recompute from the agents' stores.
    static let plainFedAvg = """
        rounds: {min_agents: 3, timeout_seconds: 60, sampling_rate: 1.0, clip_norm: 0.5, learning_rate: 0.5, sequence_length: 20}
        server_optimizer: {kind: sgd, learning_rate: 1.0}
        secure_aggregation: {enabled: false}

        """

    /// The same with secure aggregation: the aggregator sees only masked vectors, unmasks their sum, and
    /// the sum is on a grid of S/2²⁰ (max_users 200: no coarser grid is needed), so the model matches the
    /// independent average to within the agents' rounding (3 steps over 130 users, about 1e-8).
    static let secureFedAvg = """
        rounds: {min_agents: 3, timeout_seconds: 60, sampling_rate: 1.0, clip_norm: 0.5, learning_rate: 0.5, sequence_length: 20}
        server_optimizer: {kind: sgd, learning_rate: 1.0}
        secure_aggregation: {enabled: true, threshold: 2, max_users: 200}

        """

    @Test("Three agents complete three rounds; each new model equals the weighted average the test recomputes from the agents' data",
          arguments: [false, true])
    func threeRoundsMatchIndependentAverage(secure: Bool) async throws {
        let agents = [(id: "region-1", users: 40), (id: "region-2", users: 60), (id: "region-3", users: 30)]
        let federation = try await Federation(agents: agents, enrolled: agents.map(\.id),
                                              aggregatorSettings: secure ? Self.secureFedAvg : Self.plainFedAvg)
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml", "--rounds", "3"])
        let processes = try agents.map { try federation.start("edge-agent", ["run", "--config", "\($0.id).yaml"]) }
        #expect(await aggregator.waitForExit(seconds: 180) == 0, "\(aggregator.output)")
        let rounds = aggregator.lines(startingWith: "round ")
        #expect(rounds.count == 3, "\(aggregator.output)")
        #expect(rounds.allSatisfy { $0.contains("accepted 3") && $0.contains("aggregated") }, "\(rounds)")
        for process in processes {
            process.terminate()
            _ = await process.waitForExit(seconds: 20)
        }
        // Which path ran: masked updates and an unmasked sum, or plain updates.
        #expect(aggregator.output.contains("Secure aggregation: sum unmasked") == secure, "\(aggregator.output)")
        #expect(aggregator.output.contains("Masked update accepted") == secure)
        #expect(aggregator.output.contains("Update accepted") == !secure)
        if secure {
            #expect(processes.allSatisfy { $0.output.contains("Secure aggregation: masked update sent") })
        }

        let catalog = try CategoryCatalog.read(from: federation.path("catalog.txt"))
        let hyperparameters = RoundHyperparameters(samplingRate: 1, clipNorm: 0.5, noiseMultiplier: 0, learningRate: 0.5,
                                                   localSteps: 1, sequenceLength: 20)
        for version in 0..<3 {
            let before = try ModelFile.read(from: federation.path("state/models/model-v\(version).fdlm"))
            let after = try ModelFile.read(from: federation.path("state/models/model-v\(version + 1).fdlm"))
            #expect(before.modelVersion == UInt64(version) && after.modelVersion == UInt64(version + 1))
            let (worst, users) = try Self.differenceFromIndependentAverage(
                federation, agents: agents.map(\.id), catalog: catalog, hyperparameters: hyperparameters,
                before: before.parameters, after: after.parameters)
            #expect(users > 100)
            #expect(worst < 1e-6, "model v\(version + 1) differs from the independent average by \(worst)")
            #expect(before.parameters.values != after.parameters.values)
        }
    }

    @Test("An agent killed with SIGKILL mid-round: the round completes at its deadline with the others (plain, and secure aggregation recovering the dropped agent's masks)",
          arguments: [false, true])
    func agentKilledMidRound(secure: Bool) async throws {
        // region-3 has many more shoppers, so its round takes long enough to be killed in the middle of it. A secure
        // round gives agents 15 % of the deadline to advertise their keys: 10 s leaves a loaded machine 1.5 s.
        let timeout = secure ? 10 : 6
        let agents = [(id: "region-1", users: 20), (id: "region-2", users: 20), (id: "region-3", users: 2_000)]
        let federation = try await Federation(agents: agents, enrolled: agents.map(\.id), aggregatorSettings: """
            rounds: {min_agents: 2, timeout_seconds: \(timeout), sampling_rate: 1.0, sequence_length: 50}
            secure_aggregation: {enabled: \(secure)}

            """)
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml", "--rounds", "1"])
        let processes = try agents.map { try federation.start("edge-agent", ["run", "--config", "\($0.id).yaml"]) }
        defer { processes.forEach { $0.terminate() } }
        #expect(await processes[2].waitForOutput("Round open: training", seconds: 60), "\(processes[2].output)")
        if secure {
            // Killed after step 1: its pairwise masks are in the others' inputs and must be removed from its shares.
            #expect(await aggregator.waitForOutput("Secure aggregation step closed: sharing", seconds: 30),
                    "\(aggregator.output)")
        }
        processes[2].kill()
        #expect(!processes[2].output.contains("Trained local update"), "region-3 finished before it was killed")
        #expect(await aggregator.waitForExit(seconds: 60) == 0, "\(aggregator.output)")
        let rounds = aggregator.lines(startingWith: "round ")
        #expect(rounds.count == 1 && rounds[0].contains("accepted 2") && rounds[0].contains("aggregated"),
                "\(aggregator.output)")
        let status = try Self.status(federation)
        let last = status["last_round"] as? [String: Any]
        #expect(last?["agents"] as? [String] == ["region-1", "region-2"])
        #expect((last?["seconds"] as? Double ?? 0) >= Double(timeout), "the round should have waited for its deadline")
        if secure {
            #expect(aggregator.output.contains("Secure aggregation: sum unmasked"), "\(aggregator.output)")
            #expect(aggregator.output.contains("dropped=1"), "the dropped agent's masks were not recovered: \(aggregator.output)")
        }
    }

    @Test("The aggregator killed with SIGKILL and restarted resumes at the same round and model; agents reconnect by themselves")
    func aggregatorRestartResumes() async throws {
        let agents = [(id: "region-1", users: 30), (id: "region-2", users: 30), (id: "region-3", users: 30)]
        // Plain rounds: agents re-send the interrupted round's update to the restarted aggregator. (With
        // secure aggregation they never re-send: docs/PROTOCOL.md, "Secure aggregation in rounds".)
        let federation = try await Federation(agents: agents, enrolled: agents.map(\.id), aggregatorSettings: """
            rounds: {min_agents: 3, timeout_seconds: 30, sampling_rate: 1.0, sequence_length: 20}
            server_optimizer: {kind: adam, learning_rate: 0.01}
            secure_aggregation: {enabled: false}

            """)
        let first = try federation.start("aggregator", ["run", "--config", "aggregator.yaml"])
        let processes = try agents.map { try federation.start("edge-agent", ["run", "--config", "\($0.id).yaml"]) }
        defer { processes.forEach { $0.terminate() } }
        #expect(await first.waitForOutput("round 2 │", seconds: 120), "\(first.output)")
        first.kill()
        let checkpoint = try #require(try CheckpointStore(path: federation.path("state/checkpoint.sqlite")).load())
        #expect(checkpoint.round >= 2)

        let second = try federation.start("aggregator", ["run", "--config", "aggregator.yaml",
                                                         "--rounds", "1"])
        #expect(await second.waitForExit(seconds: 120) == 0, "\(second.output)")
        #expect(second.output.contains("Resumed from checkpoint"), "\(second.output)")
        let resumed = second.lines(startingWith: "round ")
        // The next round after the checkpoint, started from the checkpoint's model, with every agent back.
        #expect(resumed.count == 1 && resumed[0].hasPrefix("round \(checkpoint.round + 1) │"), "\(second.output)")
        #expect(resumed.first?.contains("accepted 3") == true, "agents did not reconnect: \(second.output)")
        #expect(resumed.first?.contains("→ model v\(checkpoint.modelVersion + 1)") == true, "\(resumed)")
        let status = try Self.status(federation)
        let last = status["last_round"] as? [String: Any]
        #expect(last?["evaluated_model_version"] as? Int == Int(checkpoint.modelVersion))
        let restored = try ModelFile.read(from: federation.path("state/models/model-v\(checkpoint.modelVersion).fdlm"))
        #expect(restored.parameters == checkpoint.parameters)
    }

    @Test("Secure rounds after an aggregator crash: agents that released in the interrupted round never re-send it; the re-run round fails fast and the next one aggregates")
    func secureRoundAfterRestart() async throws {
        // region-3 trains far longer, so the crash comes after regions 1 and 2 released round 2 and before it did.
        let agents = [(id: "region-1", users: 20), (id: "region-2", users: 20), (id: "region-3", users: 1_500)]
        let federation = try await Federation(agents: agents, enrolled: agents.map(\.id), aggregatorSettings: """
            rounds: {min_agents: 2, timeout_seconds: 40, sampling_rate: 1.0, sequence_length: 50}
            secure_aggregation: {enabled: true}

            """)
        let first = try federation.start("aggregator", ["run", "--config", "aggregator.yaml"])
        let processes = try agents.map { try federation.start("edge-agent", ["run", "--config", "\($0.id).yaml"]) }
        defer { processes.forEach { $0.terminate() } }
        func masked(_ output: String) -> Int { output.components(separatedBy: "Masked update accepted").count - 1 }
        let deadline = ContinuousClock.now + .seconds(150)
        while masked(first.output) < 5, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        first.kill()
        try #require(masked(first.output) >= 5, "round 2 never got two masked updates: \(first.output)")
        try #require(first.lines(startingWith: "round 1 │").first?.contains("accepted 3 (secure sum)") == true,
                     "\(first.output)")
        try #require(first.lines(startingWith: "round 2 │").isEmpty, "round 2 completed before the crash (timing)")

        let second = try federation.start("aggregator", ["run", "--config", "aggregator.yaml", "--rounds", "2"])
        #expect(await second.waitForExit(seconds: 150) == 0, "\(second.output)")
        let rounds = second.lines(startingWith: "round ")
        #expect(rounds.count == 2, "\(second.output)")
        // Round 2 again: nobody may release into it twice, so it has at most region-3 (still busy with the
        // interrupted round) and cannot reach t = 2. It fails at its key step (0.15 T = 6 s), not after 40 s.
        #expect(rounds.first?.hasPrefix("round 2 │") == true && rounds.first?.contains("FAILED quorum") == true, "\(rounds)")
        let seconds = rounds.first.flatMap { line in
            line.split(separator: "│").map { $0.trimmingCharacters(in: .whitespaces) }.last { $0.hasSuffix(" s") }
        }.flatMap { Double($0.dropLast(2)) }
        #expect((seconds ?? 99) < 15, "the re-run round should fail at its key step: \(rounds)")
        // The next round runs normally with the agents that are free.
        #expect(rounds.last?.hasPrefix("round 3 │") == true && rounds.last?.contains("(secure sum)") == true
                    && rounds.last?.contains("aggregated") == true, "\(second.output)")
        #expect(processes.allSatisfy { !$0.output.contains("Re-sending") }, "a secure round's update was re-sent")
    }

    @Test("A late joiner receives the current model and takes part in the next round")
    func lateJoinerGetsCurrentModel() async throws {
        let agents = [(id: "region-1", users: 30), (id: "region-2", users: 30), (id: "region-3", users: 30)]
        let federation = try await Federation(agents: agents, enrolled: agents.map(\.id), aggregatorSettings: """
            rounds: {min_agents: 2, timeout_seconds: 3, sampling_rate: 1.0, sequence_length: 20}

            """)
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml"])
        defer { aggregator.terminate() }
        let early = try agents.prefix(2).map { try federation.start("edge-agent", ["run", "--config", "\($0.id).yaml"]) }
        defer { early.forEach { $0.terminate() } }
        #expect(await aggregator.waitForOutput("round 3 │", seconds: 120), "\(aggregator.output)")
        let late = try federation.start("edge-agent", ["run", "--config", "region-3.yaml"])
        defer { late.terminate() }
        #expect(await late.waitForOutput("Update accepted by the aggregator", seconds: 60), "\(late.output)")
        // The model it trained on is the aggregator's model of that version, byte for byte.
        let local = try ModelFile.read(from: federation.path("data/region-3/model.fdlm"))
        #expect(local.modelVersion >= 3)
        let exported = try ModelFile.read(from: federation.path("state/models/model-v\(local.modelVersion).fdlm"))
        #expect(local.parameters == exported.parameters)
        #expect(aggregator.output.contains("agent.id=region-3"))
    }

    /// Recomputes a round independently — each agent's Σ of clipped deltas over its users (q = 1, no noise), then
    /// Σ / Σ users added to `before` — and returns the largest difference from `after`, and the users.
    static func differenceFromIndependentAverage(
        _ federation: Federation, agents: [String], catalog: CategoryCatalog, hyperparameters: RoundHyperparameters,
        before: LSTMParameters<Float>, after: LSTMParameters<Float>
    ) throws -> (worst: Double, users: Int) {
        var sum = [Double](repeating: 0, count: before.values.count)
        var users = 0
        for agent in agents {
            let store = try EventStore(path: federation.path("data/\(agent)/events.sqlite"))
            let data = try StoreRoundWorker.read(store: store, catalog: catalog, sequenceLength: 20,
                                                 evaluationUsers: 0) { $0.count >= 2 }
            let result = LocalTraining(hyperparameters: hyperparameters, threads: 1).run(global: before, users: data.training)
            for index in sum.indices { sum[index] += Double(result.deltaSum[index]) }
            users += result.sampledUsers
        }
        var worst = 0.0
        for index in sum.indices {
            let expected = Double(before.values[index]) + sum[index] / Double(users)
            worst = max(worst, abs(expected - Double(after.values[index])))
        }
        return (worst, users)
    }

    static func status(_ federation: Federation) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: federation.path("state/status.json")))
        return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }
}
