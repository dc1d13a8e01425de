@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import TestSupport
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Federated drift thresholds end to end: agents score live events, release DP what-if alert and event
/// counts with their updates (charged to the ledger), the aggregator merges them, moves the threshold
/// toward the alert budget and broadcasts it, and the agents apply it.
@Suite("Federated drift thresholds between real processes", .serialized, .timeLimit(.minutes(3)))
struct DriftThresholdIntegrationTests {
    @Test("Agents' DP alert-rate releases become a broadcast threshold that the agents apply; each release is charged; live state answers recommendation queries")
    func thresholdsReachAgents() async throws {
        let federation = try await Federation(agents: [(id: "region-1", users: 40)], enrolled: ["region-1"],
                                              aggregatorSettings: """
            rounds: {min_agents: 1, timeout_seconds: 30, sampling_rate: 1.0, sequence_length: 20}
            drift: {alert_budget_per_10k: 50, histogram_noise_multiplier: 1.0}

            """)
        let port = federation.port + 5
        try federation.appendLines("""
            ingest: tcp://127.0.0.1:\(port)
            ingest_format: jsonl
            alerts: {recommend: "tcp://127.0.0.1:\(port + 1)"}
            insecure_loopback: true

            """, to: "region-1.yaml")
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml"])
        defer { aggregator.terminate() }
        let agent = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        defer { agent.terminate() }
        #expect(await agent.waitForOutput("Received global model", seconds: 60), "\(agent.output)")

        // 400 shoppers' live events, so that the agent has drift scores to histogram.
        let context = try ZMQContext()
        let push = try ZMQChannel(context: context, configuration: .init(kind: .push, connect: ["tcp://127.0.0.1:\(port)"]))
        defer { push.close() }
        var random = SplitMix64(seed: 1)
        var rows: [String] = []
        // Shopper ids with nine distinctive digits, so that the log audit below can look for them.
        let shopper = { (user: Int) in 730_000_000 + user * 7 }
        for user in 0..<400 {
            for step in 0..<12 {
                let category = 1_000 + (random.next() % 40) * 7_919 % 9_999_991
                rows.append(#"{"user_id": \#(shopper(user)), "item_id": \#(random.next() % 100_000), "category_id": \#(category), "behavior_type": "pv", "timestamp": \#(1_512_000_000 + step * 300)}"#)
            }
        }
        for start in stride(from: 0, to: rows.count, by: 200) {
            try await push.send([Array(rows[start..<min(start + 200, rows.count)].joined(separator: "\n").utf8)])
        }
        // Rows the agent refuses (logged as warnings): a valid shopper with a bad behaviour, a bad shopper id.
        let refused = [#"{"user_id": \#(shopper(3)), "item_id": 5, "category_id": 1000, "behavior_type": "zz", "timestamp": 1512000000}"#,
                       #"{"user_id": "\#(shopper(4))x", "item_id": 5, "category_id": 1000, "behavior_type": "pv", "timestamp": 1512000000}"#]
        try await push.send([Array(refused.joined(separator: "\n").utf8)])
        #expect(await aggregator.waitForOutput("Alert thresholds calibrated", seconds: 120), "\(aggregator.output)")
        #expect(await agent.waitForOutput("Alert thresholds from the aggregator", seconds: 30), "\(agent.output)")
        // Both thresholds are in the checkpoint (a restarted aggregator keeps them) and in the agent's
        // thresholds.json (what `edge-agent alerts` shows); the agent writes it on its scoring thread.
        let checkpoint = try CheckpointStore(path: federation.path("state/checkpoint.sqlite")).load()
        #expect(checkpoint?.thresholds != nil)
        // …and in the aggregator's status.json, with the budgets they are calibrated to.
        var status: [String: Any]?
        for _ in 0..<50 where (status?["thresholds"] as? [String: Any]) == nil {
            let data = FileManager.default.contents(atPath: federation.path("state/status.json")) ?? Data()
            status = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            if (status?["thresholds"] as? [String: Any]) == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        let shown = status?["thresholds"] as? [String: Any]
        #expect(shown?["alert_budget_per_10k"] as? Double == 50 && shown?["churn_risk"] is Double, "\(String(describing: status))")
        var applied: AlertThresholds?
        for _ in 0..<50 where applied == nil {
            applied = AlertThresholdsFile.read(federation.path("data/region-1/thresholds.json"))?.thresholds
            if applied == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(applied != nil && applied?.churnRisk.isFinite == true)
        // The per-event scoring latency histogram counts the live events scored (not the history replay).
        let announcement = try JSONDecoder().decode(HTTPAnnouncement.self, from: Data(contentsOf: URL(
            fileURLWithPath: federation.path("data/region-1/http.json"))))
        let token = try String(contentsOfFile: federation.path("data/region-1/http.token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        var request = URLRequest(url: try #require(URL(string: "http://127.0.0.1:\(announcement.port)/metrics")))
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        let metrics = String(decoding: try await URLSession.shared.data(for: request).0, as: UTF8.self)
        let scored = metrics.split(separator: "\n").first { $0.hasPrefix("feddrift_scoring_seconds_count") }
            .flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
        #expect(scored >= 1 && scored <= Double(rows.count), "\(metrics)")
        let buckets = metrics.split(separator: "\n").filter { $0.hasPrefix("feddrift_scoring_seconds_bucket") }
            .compactMap { Double($0.split(separator: " ").last ?? "") }
        #expect(buckets.count >= 10 && buckets == buckets.sorted() && buckets.last == scored, "cumulative buckets: \(buckets)")
        let listing = try federation.start("edge-agent", ["alerts", "--config", "region-1.yaml"])
        #expect(await listing.waitForExit(seconds: 30) == 0, "\(listing.output)")
        #expect(listing.output.contains("threshold"), "\(listing.output)")
        // The same live state answers recommendation queries (REQ), through the CLI. Scoring runs behind
        // ingest on its own thread, so the shopper may not be scored at the first ask: ask again.
        var items: [[String: Any]] = [], output = ""
        for _ in 0..<30 where items.count < 5 {
            let query = try federation.start("edge-agent", ["recommend", "--config", "region-1.yaml", "--user", "\(shopper(7))",
                                                             "--n", "5"])
            #expect(await query.waitForExit(seconds: 30) == 0, "\(query.output)")
            output = query.output
            let answer = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
            items = answer?["recommendations"] as? [[String: Any]] ?? []
            if items.count < 5 { try await Task.sleep(for: .seconds(1)) }
        }
        #expect(items.count == 5, "\(output)")
        let unknown = try federation.start("edge-agent", ["recommend", "--config", "region-1.yaml", "--user", "987654321"])
        #expect(await unknown.waitForExit(seconds: 30) == 0)
        #expect(unknown.output.contains("no scored events"), "\(unknown.output)")
        let ledger = try PrivacyLedger(path: federation.path("data/region-1/privacy.sqlite"),
                                       budget: PrivacyBudget(epsilon: .infinity, delta: 1e-6))
        // Four noisy sums with multiplier 1 each: accounted as one Gaussian mechanism with multiplier 1/2 (less the
        // quantisation grid's one step in 2²⁰).
        #expect(try ledger.entries().contains {
            $0.mechanism == "alert_rate" && abs($0.noiseMultiplier - 0.5 / (1 + 1.0 / 1_048_576)) < 1e-12
        })

        // Log audit: no line at notice level or above names a shopper, in either process (the refused
        // rows were logged as warnings). Control: the same search finds the ids in the rows sent.
        agent.terminate()
        aggregator.terminate()
        _ = await agent.waitForExit(seconds: 20)
        _ = await aggregator.waitForExit(seconds: 20)
        let ids = (0..<400).map { String(shopper($0)) }
        func naming(_ text: String) -> [String] {
            text.split(separator: "\n").map(String.init).filter { line in
                let level = line.split(separator: " ").dropFirst().first.map(String.init) ?? ""
                return ["notice", "warning", "error", "critical"].contains(level) && ids.contains { line.contains($0) }
            }
        }
        #expect(agent.output.contains("Refused live event"), "the refusals were logged")
        #expect(naming(agent.output).isEmpty && naming(aggregator.output).isEmpty,
                "\(naming(agent.output) + naming(aggregator.output))")
        #expect(naming(refused.map { "2026-01-01T00:00:00Z warning " + $0 }.joined(separator: "\n")).count == 2,
                "control: the search finds a shopper id in a warning line")
    }
}
