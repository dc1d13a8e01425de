@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
import Foundation
import TestSupport
import Testing

/// Real `aggregator` and `edge-agent` processes killed with SIGKILL at each step of the protocol where a
/// crash could lose or double something (``Failpoint``: the process kills itself the Nth time it reaches
/// the step, so the crash lands exactly there on any machine), then restarted. Afterwards: no committed
/// round is lost or counted twice, no privacy ledger goes back or charges a round twice, every stored
/// event is stored once, every alert is in the alert file once.
@Suite("SIGKILL at every protocol step: nothing lost, nothing counted twice", .serialized, .timeLimit(.minutes(10)))
struct FaultInjectionTests {
    static let agents = [(id: "region-1", users: 25), (id: "region-2", users: 25)]
    /// Private agents (every release noised and charged), plain aggregation: after an aggregator crash
    /// agents re-send the open round's update (with secure aggregation they never do: FederationTests).
    static let settings = """
        rounds: {min_agents: 2, timeout_seconds: 15, sampling_rate: 0.5, clip_norm: 1.0, noise_multiplier: 1.0, sequence_length: 20, expected_users: 50}
        secure_aggregation: {enabled: false}

        """
    static let budgets = ["region-1": 1_000.0, "region-2": 1_000.0]

    static func federation() async throws -> Federation {
        try await Federation(agents: agents, enrolled: agents.map(\.id), aggregatorSettings: settings, budgets: budgets)
    }

    /// The rounds of `agent`'s model-update charges, in ledger order.
    static func updateCharges(_ federation: Federation, _ agent: String) throws -> [UInt64] {
        let ledger = try PrivacyLedger(path: federation.path("data/\(agent)/privacy.sqlite"),
                                       budget: PrivacyBudget(epsilon: 1_000, delta: 1e-6))
        return try ledger.entries().filter { $0.mechanism.hasPrefix("model_update") }.map(\.round)
    }

    static func checkpoint(_ federation: Federation) throws -> AggregatorCheckpoint? {
        try CheckpointStore(path: federation.path("state/checkpoint.sqlite")).load()
    }

    /// "accepted N" of a progress line.
    static func accepted(_ line: String) -> Int {
        guard let range = line.range(of: "accepted ") else { return 0 }
        return Int(line[range.upperBound...].prefix { $0.isNumber }) ?? 0
    }

    @Test("The aggregator killed after opening a round, after accepting an update, inside the checkpoint's transaction and after it: the restart resumes at the last committed round, and no update is counted twice",
          arguments: ["aggregator.round.opened=2", "aggregator.update.accepted=3", "aggregator.checkpoint.write=2",
                      "aggregator.checkpoint.saved=2"])
    func aggregatorCrash(failpoint: String) async throws {
        let step = String(failpoint.prefix { $0 != "=" })
        let federation = try await Self.federation()
        let first = try federation.start("aggregator", ["run", "--config", "aggregator.yaml"],
                                         environment: [Failpoint.environmentVariable: failpoint])
        let agents = try Self.agents.map { try federation.start("edge-agent", ["run", "--config", "\($0.id).yaml"]) }
        defer { (agents + [first]).forEach { $0.terminate() } }
        #expect(await first.waitForFailpoint(step, seconds: 120), "\(first.output)")
        #expect(first.output.contains("FAULT INJECTION ARMED"), "a process armed to crash says so")
        let committed = try #require(try Self.checkpoint(federation))
        let completedBefore = first.lines(startingWith: "round ")

        let second = try federation.start("aggregator", ["run", "--config", "aggregator.yaml", "--rounds", "2"])
        #expect(await second.waitForExit(seconds: 120) == 0, "\(second.output)")
        #expect(second.output.contains("Resumed from checkpoint"), "\(second.output)")
        #expect(!second.output.contains("FAULT INJECTION"))
        let lines = second.lines(startingWith: "round ")
        // Not lost: the restart continues after the last committed round, from its model.
        #expect(lines.count == 2 && lines[0].hasPrefix("round \(committed.round + 1) │"), "\(completedBefore) \(second.output)")
        let final = try #require(try Self.checkpoint(federation))
        #expect(final.round == committed.round + 2)
        let aggregated = lines.filter { $0.contains("aggregated → model v") }
        #expect(final.modelVersion == committed.modelVersion + UInt64(aggregated.count), "\(lines)")
        #expect(aggregated.count == 2 && lines.allSatisfy { Self.accepted($0) == 2 },
                "both agents are back: \(lines) \(agents.map(\.output))")
        // Not counted twice: each agent's accepted updates grew by exactly the rounds that accepted it.
        for agent in Self.agents {
            let grown = (final.agents[agent.id]?.acceptedUpdates ?? 0) - (committed.agents[agent.id]?.acceptedUpdates ?? 0)
            let accepted = Self.acceptedRounds(second.output, agent: agent.id)
            #expect(grown == accepted.count && Set(accepted).count == accepted.count, "\(agent.id): \(grown), \(accepted)")
        }
        #expect(!second.output.contains("Ledger receipt refused"), "\(second.output)")

        for agent in agents { agent.terminate() }
        for agent in agents { _ = await agent.waitForExit(seconds: 30) }
        for agent in Self.agents {
            let rounds = try Self.updateCharges(federation, agent.id)
            // A round re-opened by the restarted aggregator reuses the update already charged: one charge per round.
            #expect(Set(rounds).count == rounds.count, "\(agent.id) charged a round twice: \(rounds)")
            #expect(rounds.count >= Int(final.round) - 1, "\(agent.id): \(rounds)")
        }
    }

    @Test("An agent killed on receiving a round, mid-training, inside its ledger's transaction, before and after sending its update: restarted, its ledger never went back, every accepted update was charged, none was accepted twice, and it takes part again",
          arguments: ["agent.round.received=2", "agent.training=3", "agent.ledger.charge=2", "agent.update.before-send=2",
                      "agent.update.after-send=2"])
    func agentCrash(failpoint: String) async throws {
        let step = String(failpoint.prefix { $0 != "=" })
        let federation = try await Self.federation()
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml", "--rounds", "4"])
        let steady = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        let victim = try federation.start("edge-agent", ["run", "--config", "region-2.yaml"],
                                          environment: [Failpoint.environmentVariable: failpoint])
        defer { [steady, aggregator].forEach { $0.terminate() } }
        #expect(await victim.waitForFailpoint(step, seconds: 120), "\(victim.output)")
        let chargedAtCrash = try Self.updateCharges(federation, "region-2")

        let restarted = try federation.start("edge-agent", ["run", "--config", "region-2.yaml"])
        defer { restarted.terminate() }
        #expect(await aggregator.waitForExit(seconds: 180) == 0, "\(aggregator.output)")
        restarted.terminate()
        steady.terminate()
        #expect(await restarted.waitForExit(seconds: 30) == 0, "\(restarted.output)")
        _ = await steady.waitForExit(seconds: 30)

        let charged = try Self.updateCharges(federation, "region-2")
        // The ledger never goes back: everything charged before the crash is still there, in order.
        #expect(Array(charged.prefix(chargedAtCrash.count)) == chargedAtCrash, "\(chargedAtCrash) → \(charged)")
        // Every update the aggregator accepted from the agent was charged, and it accepted at most one per
        // round. (A round the agent trains again after a crash is charged again: the update released
        // before the crash may have left — it may be in the kernel's buffers — so both are counted.)
        let accepted = Self.acceptedRounds(aggregator.output, agent: "region-2")
        #expect(Set(accepted).count == accepted.count, "an update accepted twice in a round: \(accepted)")
        #expect(Set(accepted).isSubset(of: Set(charged)), "accepted \(accepted), charged \(charged)")
        #expect(!accepted.isEmpty)
        if step == Failpoint.agentLedgerCharge.rawValue {
            // Killed inside the transaction: the charge was rolled back whole, and the chain still verifies.
            let verify = try federation.start("edge-agent", ["privacy", "--config", "region-2.yaml", "--verify"])
            #expect(await verify.waitForExit(seconds: 30) == 0, "\(verify.output)")
        }
        #expect(!aggregator.output.contains("Ledger receipt refused"), "\(aggregator.output)")
        let lines = aggregator.lines(startingWith: "round ")
        #expect(lines.count == 4, "\(aggregator.output)")
        #expect(lines.last.map(Self.accepted) == 2, "the restarted agent takes part again: \(lines)")
        let final = try #require(try Self.checkpoint(federation))
        for agent in Self.agents {
            let logged = Self.acceptedRounds(aggregator.output, agent: agent.id)
            // Never more than were accepted (the updates of a last round that failed quorum are not saved).
            #expect((final.agents[agent.id]?.acceptedUpdates ?? 0) <= logged.count, "\(agent.id): \(logged) \(lines)")
        }
    }

    /// The rounds of the "Update accepted" log lines for `agent`.
    static func acceptedRounds(_ output: String, agent: String) -> [UInt64] {
        output.split(separator: "\n").filter { $0.contains("Update accepted") && $0.contains("agent.id=\(agent) ") }
            .compactMap { line in
                line.range(of: "round.id=").flatMap { UInt64(line[$0.upperBound...].prefix { $0.isNumber }) }
            }
    }

    @Test("An agent killed after storing an ingest message and after publishing alerts it had not marked: replayed again, every row is stored once and every alert is in the alert file once (without stream offsets the same replay stores every row twice)")
    func ingestAndAlertsCrash() async throws {
        let (federation, port, _) = try await IngestTests.federation()
        let shape = try #require(LSTMShape.preset(named: "small"))
        try ModelFile.write(LSTMParameters<Float>(shape: shape, seed: 1), modelVersion: 1,
                            to: federation.path("data/region-1/model.fdlm"))
        let rows = IngestTests.rows(users: 0..<40, events: 30)
        try (rows.joined(separator: "\n") + "\n").write(toFile: federation.path("live.jsonl"), atomically: true, encoding: .utf8)
        let store = federation.path("data/region-1/events.sqlite")
        let before = try EventStore(path: store).eventCount()
        let replay = ["replay", "--endpoint", "tcp://127.0.0.1:\(port)", "--key", "keys/shop",
                      "--server-key", "keys/region-1/identity.public", "--batch", "50", "live.jsonl"]

        // 1. Killed after the third ingest message is durable, while the producer still sends.
        let first = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"],
                                         environment: [Failpoint.environmentVariable: "agent.ingest.stored=3"])
        #expect(await first.waitForOutput("Live ingest listening", seconds: 30), "\(first.output)")
        let sender = try federation.start("edge-agent", replay + ["--rate", "2000"])
        #expect(await first.waitForFailpoint("agent.ingest.stored", seconds: 60), "\(first.output)")
        _ = await sender.waitForExit(seconds: 30)
        let afterCrash = try EventStore(path: store).eventCount() - before
        #expect(afterCrash >= 150 && afterCrash < rows.count, "3 messages of 50 stored, not all: \(afterCrash)")

        // 2. Restarted, killed after publishing its first alerts and before marking them published.
        let second = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"],
                                          environment: [Failpoint.environmentVariable: "agent.alerts.published=1"])
        #expect(await second.waitForOutput("Live ingest listening", seconds: 30), "\(second.output)")
        let again = try federation.start("edge-agent", replay)
        #expect(await again.waitForExit(seconds: 60) == 0, "\(again.output)")
        #expect(await second.waitForFailpoint("agent.alerts.published", seconds: 60), "\(second.output)")

        // 3. Restarted: it re-publishes the unmarked alerts; the producer replays the file once more.
        let third = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        defer { third.terminate() }
        #expect(await third.waitForOutput("Live ingest listening", seconds: 30), "\(third.output)")
        #expect(third.output.contains("Re-published alerts left unconfirmed"), "\(third.output)")
        let once = try federation.start("edge-agent", replay)
        #expect(await once.waitForExit(seconds: 60) == 0, "\(once.output)")
        var stored = 0
        for _ in 0..<100 {
            stored = try EventStore(path: store).eventCount() - before
            if stored >= rows.count { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: .milliseconds(500))
        #expect(try EventStore(path: store).eventCount() - before == rows.count, "every row once, three replays")

        // Every stored alert is in the file, each id once.
        third.terminate()
        #expect(await third.waitForExit(seconds: 30) == 0, "\(third.output)")
        #expect(third.output.contains("rows.already_stored="), "\(third.output)")
        let alerts = try AlertStore(path: federation.path("data/region-1/alerts.sqlite")).list()
        #expect(!alerts.isEmpty)
        #expect(try AlertStore(path: federation.path("data/region-1/alerts.sqlite")).unpublished().isEmpty)
        let lines = try String(contentsOfFile: federation.path("data/region-1/alerts.jsonl"), encoding: .utf8)
            .split(separator: "\n").compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let ids = lines.compactMap { $0["id"] as? String }
        #expect(ids.count == Set(ids).count, "an alert twice in the file: \(ids.count) lines, \(Set(ids).count) ids")
        #expect(Set(ids) == Set(alerts.map(\.id)), "file \(Set(ids).count) vs store \(alerts.count)")

        // The control: the same replay without stream offsets stores every row again.
        let control = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        defer { control.terminate() }
        #expect(await control.waitForOutput("Live ingest listening", seconds: 30), "\(control.output)")
        let plain = try federation.start("edge-agent", replay + ["--no-stream"])
        #expect(await plain.waitForExit(seconds: 60) == 0, "\(plain.output)")
        for _ in 0..<100 where try EventStore(path: store).eventCount() - before < 2 * rows.count {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(try EventStore(path: store).eventCount() - before == 2 * rows.count)
    }
}
