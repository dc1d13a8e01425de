@testable import FedNode
import Foundation
import TestSupport
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The aggregator's operator endpoint on a real `aggregator` process: every path behind the bearer
/// token, `/metrics` in the Prometheus text format with the federation's real figures, `/status`
/// and `aggregator status` saying how it is going.
@Suite("Operator endpoints of a real aggregator and agent: token, /metrics, /status, status commands", .serialized,
       .timeLimit(.minutes(4)))
struct OperatorEndpointTests {
    static func get(_ url: URL, token: String?) async throws -> (Int, String) {
        var request = URLRequest(url: url, timeoutInterval: 10)
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    /// A strict reading of the Prometheus text exposition format (0.0.4): every sample line is
    /// `name{label="value",...} number`, and its family was declared by a `# TYPE` line before it.
    static func samples(_ text: String) -> [String: Double]? {
        var typed = Set<String>(), samples: [String: Double] = [:]
        let sample = #/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*)?\})? (-?[0-9.]+(e[+-]?[0-9]+)?|NaN|\+Inf|-Inf)$/#
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else { return nil }
                typed.insert(String(parts[2]))
            } else if line.hasPrefix("#") {
                continue
            } else {
                guard let match = line.wholeMatch(of: sample) else { return nil }
                let name = String(match.1)
                let family = ["_bucket", "_sum", "_count"].reduce(name) { $0.hasSuffix($1) ? String($0.dropLast($1.count)) : $0 }
                guard typed.contains(name) || typed.contains(family), let value = Double(match.5) else { return nil }
                samples[name + (match.2.map(String.init) ?? "")] = value
            }
        }
        return samples
    }

    @Test("Refuses requests without the token; /metrics parses as Prometheus text and counts the real rounds; status says below quorum when agents leave")
    func endpoint() async throws {
        let agents = [(id: "region-1", users: 20), (id: "region-2", users: 20), (id: "region-3", users: 20)]
        let federation = try await Federation(agents: agents, enrolled: agents.map(\.id), aggregatorSettings: """
            rounds: {min_agents: 3, timeout_seconds: 20, sampling_rate: 1.0, sequence_length: 20}

            """)
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml"])
        defer { aggregator.terminate() }
        let processes = try agents.map { try federation.start("edge-agent", ["run", "--config", "\($0.id).yaml"]) }
        defer { processes.forEach { $0.terminate() } }
        #expect(await aggregator.waitForOutput("round 2 │", seconds: 120), "\(aggregator.output)")

        let announcement = try JSONDecoder().decode(HTTPAnnouncement.self,
                                                    from: Data(contentsOf: URL(fileURLWithPath: federation.path("state/http.json"))))
        #expect(announcement.host == "127.0.0.1" && announcement.port > 0)
        let token = try String(contentsOfFile: federation.path("state/http.token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let attributes = try FileManager.default.attributesOfItem(atPath: federation.path("state/http.token"))
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600, "the token file must be private")
        let base = "http://127.0.0.1:\(announcement.port)"
        for path in ["/healthz", "/metrics", "/status"] {
            let url = try #require(URL(string: base + path))
            #expect(try await Self.get(url, token: nil).0 == 401, "\(path) answered without a token")
            #expect(try await Self.get(url, token: String(repeating: "0", count: token.count)).0 == 401, "\(path): wrong token")
        }
        // Control: with the token every path answers.
        #expect(try await Self.get(try #require(URL(string: base + "/healthz")), token: token) == (200, "ok\n"))

        let (code, text) = try await Self.get(try #require(URL(string: base + "/metrics")), token: token)
        #expect(code == 200)
        let samples = try #require(Self.samples(text), "not Prometheus text format:\n\(text)")
        let rounds = aggregator.lines(startingWith: "round ").count
        #expect(rounds >= 2)
        #expect(samples[#"feddrift_rounds_total{outcome="aggregated"}"#].map { Int($0) } ?? 0 >= 2, "\(text)")
        #expect(samples["feddrift_agents_enrolled"] == 3 && samples["feddrift_secure_aggregation"] == 1, "\(text)")
        #expect((samples["feddrift_round_duration_seconds_count"] ?? 0) >= 2, "\(text)")
        // The reference parser, when installed (scripts/test installs it).
        try text.write(toFile: federation.path("metrics.txt"), atomically: true, encoding: .utf8)
        let python = try ChildProcess(executable: URL(fileURLWithPath: "/usr/bin/env"), [
            "python3", "-c", """
            from prometheus_client.parser import text_string_to_metric_families
            families = list(text_string_to_metric_families(open("metrics.txt").read()))
            print(len(families), "families")
            """,
        ], in: federation.directory)
        let exit = await python.waitForExit(seconds: 30)
        if python.output.contains("No module named 'prometheus_client'") {
            Issue.record("prometheus_client is not installed: run scripts/test, which installs it")
        } else {
            #expect(exit == 0 && python.output.contains("families"), "\(python.output)")
        }

        // An agent's endpoint: the same token rule, its own metrics, and edge-agent status.
        let agentAnnouncement = try JSONDecoder().decode(
            HTTPAnnouncement.self, from: Data(contentsOf: URL(fileURLWithPath: federation.path("data/region-1/http.json"))))
        let agentToken = try String(contentsOfFile: federation.path("data/region-1/http.token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(agentToken != token, "every node has its own token")
        let agentMetrics = try #require(URL(string: "http://127.0.0.1:\(agentAnnouncement.port)/metrics"))
        #expect(try await Self.get(agentMetrics, token: nil).0 == 401)
        #expect(try await Self.get(agentMetrics, token: token).0 == 401, "the aggregator's token must not open an agent")
        let (agentCode, agentText) = try await Self.get(agentMetrics, token: agentToken)
        let agentSamples = try #require(agentCode == 200 ? Self.samples(agentText) : nil, "\(agentCode):\n\(agentText)")
        #expect(agentSamples["feddrift_connected"] == 1 && (agentSamples["feddrift_last_round"] ?? 0) >= 1, "\(agentText)")
        let agentStatus = try federation.start("edge-agent", ["status", "--config", "region-1.yaml"])
        #expect(await agentStatus.waitForExit(seconds: 30) == 0, "\(agentStatus.output)")
        #expect(agentStatus.output.contains(": connected, registered") && agentStatus.output.contains("NON-PRIVATE"),
                "\(agentStatus.output)")

        // The dashboard: behind the same token; its accuracy chart plots the rounds in history.jsonl.
        let dashboard = try #require(URL(string: base + "/dashboard"))
        #expect(try await Self.get(dashboard, token: nil).0 == 401)
        let (pageCode, page) = try await Self.get(dashboard, token: token)
        #expect(pageCode == 200 && page.contains("FedDrift federation"), "\(pageCode)")
        let history = try String(contentsOfFile: federation.path("state/history.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONDecoder().decode(RoundHistoryEntry.self, from: Data($0.utf8)) }
        #expect(history.count >= 2 && history.map(\.round) == (1...UInt64(history.count)).map { $0 }, "\(history)")
        let charts = SVGReader.charts(in: page)
        let accuracy = try #require(charts.first { $0.label.hasPrefix("Held-out") })
        let shown = accuracy.points("top-10")
        // The page may have been rendered before the newest round's line: compare what both have.
        let plotted = history.filter { $0.evaluatedUsers > 0 }.prefix(shown.count)
        #expect(!shown.isEmpty && shown.map(\.y) == plotted.map(\.top10) && shown.map(\.x) == plotted.map { Double($0.evaluatedModelVersion) },
                "\(shown) vs \(plotted)")
        #expect(charts.allSatisfy { $0.misplaced().isEmpty })
        let timeline = try #require(charts.first { $0.label.hasPrefix("Rounds") })
        #expect(timeline.points("duration").map(\.y) == history.prefix(timeline.marks.count).map { $0.seconds })
        #expect(page.contains("region-3") && page.contains(">live<"), "the agents table")
        // A browser signs in once: /login with the token sets a cookie, which then opens the dashboard.
        let session = URLSession(configuration: .ephemeral)
        let login = try #require(URL(string: base + "/login?next=/dashboard&token=\(token)"))
        let (loginData, loginResponse) = try await session.data(from: login)
        #expect((loginResponse as? HTTPURLResponse)?.statusCode == 200 && String(decoding: loginData, as: UTF8.self)
            .contains("FedDrift federation"), "redirected to the dashboard with the cookie")
        // The cookie is the node's own (its name derived from its token) and never holds the token itself.
        let cookie = try #require(session.configuration.httpCookieStorage?.cookies?.first { $0.name.hasPrefix("feddrift_") })
        #expect(cookie.name.count == 21 && !cookie.value.contains(token) && cookie.isHTTPOnly, "\(cookie)")
        var forged = URLRequest(url: dashboard)
        forged.setValue("\(cookie.name)=\(String(repeating: "0", count: cookie.value.count))", forHTTPHeaderField: "Cookie")
        let (_, forgedResponse) = try await URLSession(configuration: .ephemeral).data(for: forged)
        #expect((forgedResponse as? HTTPURLResponse)?.statusCode == 401, "a wrong cookie is refused")
        var real = URLRequest(url: dashboard)
        real.setValue("\(cookie.name)=\(cookie.value)", forHTTPHeaderField: "Cookie")
        let (_, realResponse) = try await URLSession(configuration: .ephemeral).data(for: real)
        #expect((realResponse as? HTTPURLResponse)?.statusCode == 200, "control: the cookie itself opens the page")
        let badLogin = try #require(URL(string: base + "/login?next=/dashboard&token=wrong"))
        #expect(try await Self.get(badLogin, token: nil).0 == 401)
        let printed = try federation.start("aggregator", ["dashboard", "--config", "aggregator.yaml"])
        #expect(await printed.waitForExit(seconds: 20) == 0)
        #expect(printed.output.hasPrefix(base + "/login?next=/dashboard&token="), "\(printed.output)")
        // The agent's alerts page, behind the agent's token.
        let alertsPage = try #require(URL(string: "http://127.0.0.1:\(agentAnnouncement.port)/alerts"))
        #expect(try await Self.get(alertsPage, token: token).0 == 401)
        let (alertsCode, alertsHTML) = try await Self.get(alertsPage, token: agentToken)
        #expect(alertsCode == 200 && alertsHTML.contains("FedDrift edge agent · region-1"), "\(alertsCode)")

        // aggregator status while the federation runs, then with the agents gone.
        let status = try federation.start("aggregator", ["status", "--config", "aggregator.yaml"])
        #expect(await status.waitForExit(seconds: 30) == 0, "\(status.output)")
        #expect(status.output.contains("3 of 3 live") && status.output.contains("region-2:"), "\(status.output)")
        for process in processes { process.kill() }
        try await Task.sleep(for: .seconds(8))  // past the live window
        let below = try federation.start("aggregator", ["status", "--config", "aggregator.yaml"])
        #expect(await below.waitForExit(seconds: 30) == 0)
        #expect(below.output.contains("BELOW QUORUM"), "\(below.output)")
        let gone = try federation.start("edge-agent", ["status", "--config", "region-1.yaml"])
        #expect(await gone.waitForExit(seconds: 30) == 1 && gone.output.contains("not running"), "\(gone.output)")
    }
}
