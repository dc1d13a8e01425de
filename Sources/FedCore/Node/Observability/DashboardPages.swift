package import FedLogic
package import Foundation

/// The pages browsers get from the operator endpoints: server-rendered HTML with inline SVG charts
/// (``SVGChart``), inline CSS, no script and no external asset; each page reloads itself.
package enum DashboardPages {
    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

    static let style = """
        body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
        header{background:#1d232b;color:#fff;padding:12px 20px}header h1{font-size:18px;margin:0 0 4px}
        header .facts{display:flex;flex-wrap:wrap;gap:2px 18px}header .facts span{white-space:nowrap}.warn{color:#b00020;font-weight:600}
        header .warn{color:#ffb4b4}main{display:flex;flex-wrap:wrap;gap:14px;padding:14px 20px}
        section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 12px}
        section.wide{flex-basis:100%}h2{font-size:15px;margin:0 0 8px}
        table{border-collapse:collapse;font-size:13px}td,th{padding:4px 10px;border-bottom:1px solid #eef0f3;text-align:left;vertical-align:top}
        th{color:#5a6470;font-weight:600}.ok{color:#1a7f37;font-weight:600}.bad{color:#b00020;font-weight:600}
        .bar{display:inline-block;width:120px;height:10px;background:#eef0f3;border-radius:3px;vertical-align:middle;margin-right:6px}
        .bar i{display:block;height:100%;border-radius:3px}
        svg.chart text{font:11px system-ui,sans-serif;fill:#5a6470}svg.chart text.title{font-size:13px;font-weight:600;fill:#1d232b}
        svg.chart .grid{stroke:#eef0f3}svg.chart .reference{stroke-dasharray:5 4;stroke-width:1.5}
        .muted{color:#5a6470}.kind{font-weight:600}
        """

    static func page(title: String, refreshSeconds: Int, header: String, body: String) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8">
        <meta http-equiv="refresh" content="\(refreshSeconds)">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(HTML.escape(title))</title><style>\(style)</style></head>
        <body><header>\(header)</header><main>\(body)</main></body></html>

        """
    }

    static func percent(_ value: Double) -> String { String(format: "%.1f%%", value * 100) }

    static func ago(_ seconds: Double?) -> String {
        guard let seconds, seconds.isFinite else { return "never" }
        if seconds < 90 { return "\(Int(seconds)) s ago" }
        if seconds < 5_400 { return "\(Int(seconds / 60)) min ago" }
        return String(format: "%.1f h ago", seconds / 3_600)
    }

    /// An enrolled agent as the aggregator's dashboard shows it.
    package struct AgentRow: Sendable {
        package var id: String
        package var live: Bool
        package var lastSeenSeconds: Double?
        package var lastRound: UInt64
        package var accepted: Int
        package var rejected: Int
        package var epsilonSpent: Double?
        /// The budget the operator recorded for this agent (`agents[].epsilon_budget`), if any.
        package var epsilonBudget: Double?

        package init(id: String, live: Bool, lastSeenSeconds: Double?, lastRound: UInt64, accepted: Int, rejected: Int,
                     epsilonSpent: Double?, epsilonBudget: Double?) {
            (self.id, self.live, self.lastSeenSeconds, self.lastRound, self.accepted, self.rejected)
                = (id, live, lastSeenSeconds, lastRound, accepted, rejected)
            (self.epsilonSpent, self.epsilonBudget) = (epsilonSpent, epsilonBudget)
        }
    }

    /// What the aggregator's dashboard shows.
    package struct Federation: Sendable {
        package var aggregatorID: String
        package var round: UInt64
        package var openRound: UInt64?
        package var secondsToDeadline: Double?
        package var modelVersion: UInt64
        package var liveAgents: Int
        package var minAgents: Int
        package var privacy: [String: String]
        package var alertBudgetPer10k: Double
        package var churnBudgetPer1kShopperDays: Double
        package var agents: [AgentRow]
        package var history: [RoundHistoryEntry]

        package init(aggregatorID: String, round: UInt64, openRound: UInt64?, secondsToDeadline: Double?,
                     modelVersion: UInt64, liveAgents: Int, minAgents: Int, privacy: [String: String],
                     alertBudgetPer10k: Double, churnBudgetPer1kShopperDays: Double, agents: [AgentRow],
                     history: [RoundHistoryEntry]) {
            (self.aggregatorID, self.round, self.openRound, self.secondsToDeadline, self.modelVersion)
                = (aggregatorID, round, openRound, secondsToDeadline, modelVersion)
            (self.liveAgents, self.minAgents, self.privacy) = (liveAgents, minAgents, privacy)
            (self.alertBudgetPer10k, self.churnBudgetPer1kShopperDays) = (alertBudgetPer10k, churnBudgetPer1kShopperDays)
            (self.agents, self.history) = (agents, history)
        }
    }

    /// The charts of the aggregator's dashboard, by id (the page's sections, and what a test reads).
    package static func charts(_ federation: Federation) -> [(id: String, chart: SVGChart)] {
        let history = federation.history
        let rounds = SVGChart(title: "Rounds: seconds to checkpoint (red: failed quorum)",
                              xLabel: "round", yLabel: "seconds", series: [
            .init(name: "duration", color: "#2ca02c", style: .bars,
                  points: history.map { (Double($0.round), $0.seconds) },
                  pointColors: history.map { $0.aggregated ? ($0.secureAggregation ? "#2ca02c" : "#74c476") : "#d62728" }),
        ])
        var accuracy = SVGChart(title: "Held-out next-category accuracy of the global model", xLabel: "model version",
                                yLabel: "accuracy", series: [
            .init(name: "top-10", color: palette[0],
                  points: history.filter { $0.evaluatedUsers > 0 }.map { (Double($0.evaluatedModelVersion), $0.top10) }),
            .init(name: "top-1", color: palette[1],
                  points: history.filter { $0.evaluatedUsers > 0 }.map { (Double($0.evaluatedModelVersion), $0.top1) }),
        ], yDomain: 0...1)
        accuracy.yFormat = { percent($0) }
        let ids = federation.agents.map(\.id)
        let budgets = Dictionary(federation.agents.compactMap { row in row.epsilonBudget.map { (row.id, $0) } },
                                 uniquingKeysWith: { first, _ in first })
        var budgetSeries: [SVGChart.Series] = []
        var budgetLines: [SVGChart.Reference] = []
        for (index, id) in ids.enumerated() {
            let color = palette[index % palette.count]
            budgetSeries.append(.init(name: id, color: color,
                                      points: history.compactMap { entry in entry.epsilonSpent[id].map { (Double(entry.round), $0) } }))
            if let budget = budgets[id] {
                if let same = budgetLines.firstIndex(where: { $0.y == budget }) {
                    budgetLines[same].label += ", " + id
                } else {
                    budgetLines.append(.init(label: "budget of " + id, y: budget, color: color))
                }
            }
        }
        let privacy = SVGChart(title: "Privacy budget: ε spent per region (dashed: its budget)", xLabel: "round",
                               yLabel: "ε", series: budgetSeries, references: budgetLines)
        let alerts = SVGChart(title: "Interest-shift alert rate (agents' DP counts) against the budget", xLabel: "round",
                              yLabel: "alerts / 10,000 events", series: [
            .init(name: "interest shifts", color: palette[4],
                  points: history.compactMap { entry in entry.alertsPer10kEvents.map { (Double(entry.round), $0) } }),
        ], references: [.init(label: "budget", y: federation.alertBudgetPer10k, color: "#d62728")])
        let churn = SVGChart(title: "Churn warning rate (agents' DP counts) against the budget", xLabel: "round",
                             yLabel: "per 1,000 shopper-days", series: [
            .init(name: "churn warnings", color: palette[5],
                  points: history.compactMap { entry in entry.churnPer1kShopperDays.map { (Double(entry.round), $0) } }),
        ], references: [.init(label: "budget", y: federation.churnBudgetPer1kShopperDays, color: "#d62728")])
        let thresholds = SVGChart(title: "Thresholds the federation broadcasts", xLabel: "round", yLabel: "threshold",
                                  series: [
            .init(name: "interest shift (score)", color: palette[0],
                  points: history.compactMap { entry in entry.interestShiftThreshold.map { (Double(entry.round), $0) } }),
            .init(name: "churn risk (nats)", color: palette[1],
                  points: history.compactMap { entry in entry.churnRiskThreshold.map { (Double(entry.round), $0) } }),
        ])
        return [("rounds", rounds), ("accuracy", accuracy), ("privacy", privacy), ("alert-rate", alerts),
                ("churn-rate", churn), ("thresholds", thresholds)]
    }

    /// The aggregator's dashboard: the federation now, its agents, and the charts.
    package static func aggregator(_ federation: Federation) -> String {
        let belowQuorum = federation.liveAgents < federation.minAgents
        let mode = federation.privacy["mode"] ?? "private"
        var facts = [
            "round \(federation.round)" + (federation.openRound.map { " · round \($0) open" } ?? " · waiting"),
            "model v\(federation.modelVersion)",
            "agents live \(federation.liveAgents) of \(federation.agents.count) (quorum \(federation.minAgents))",
            "secure aggregation " + (federation.privacy["secure_aggregation"] ?? "off"),
        ]
        if let seconds = federation.secondsToDeadline { facts.append(String(format: "deadline in %.0f s", seconds)) }
        if let last = federation.history.last, last.evaluatedUsers > 0 {
            facts.append("top-10 " + percent(last.top10))
        }
        var header = "<h1>FedDrift federation · \(HTML.escape(federation.aggregatorID))</h1><div class=\"facts\">"
        header += facts.map { "<span>\(HTML.escape($0))</span>" }.joined()
        header += mode == "NON-PRIVATE" ? "<span class=\"warn\">NON-PRIVATE</span>" : "<span>private (DP)</span>"
        if belowQuorum { header += "<span class=\"warn\">BELOW QUORUM: no round can open</span>" }
        header += "</div>"

        var body = ""
        let charts = Dictionary(uniqueKeysWithValues: charts(federation).map { ($0.id, $0.chart) })
        for id in ["rounds", "accuracy"] {
            if let chart = charts[id] { body += "<section id=\"\(id)\">\(chart.render())</section>" }
        }
        body += "<section id=\"agents\" class=\"wide\"><h2>Agents</h2><table><tr><th>agent</th><th>health</th>"
            + "<th>last seen</th><th>last round</th><th>updates accepted</th><th>rejected</th><th>privacy budget</th></tr>"
        for agent in federation.agents {
            let health = agent.live ? "<span class=\"ok\">live</span>" : "<span class=\"bad\">not heard</span>"
            var budget = "<span class=\"muted\">no receipt yet</span>"
            if let spent = agent.epsilonSpent {
                if let limit = agent.epsilonBudget, limit > 0 {
                    let share = min(1, spent / limit)
                    let color = share >= 1 ? "#d62728" : share > 0.8 ? "#ff7f0e" : "#2ca02c"
                    budget = "<span class=\"bar\"><i style=\"width:\(Int(share * 100))%;background:\(color)\"></i></span>"
                        + String(format: "ε %.3f of %.3g", spent, limit) + (share >= 1 ? " <span class=\"bad\">SPENT</span>" : "")
                } else {
                    budget = String(format: "ε %.3f spent", spent) + " <span class=\"muted\">(no epsilon_budget set)</span>"
                }
            }
            body += "<tr><td>\(HTML.escape(agent.id))</td><td>\(health)</td><td>\(ago(agent.lastSeenSeconds))</td>"
                + "<td>\(agent.lastRound)</td><td>\(agent.accepted)</td><td>\(agent.rejected)</td><td>\(budget)</td></tr>"
        }
        body += "</table></section>"
        body += demandSection(federation.history)
        for id in ["privacy", "thresholds", "alert-rate", "churn-rate"] {
            if let chart = charts[id] { body += "<section id=\"\(id)\">\(chart.render())</section>" }
        }
        body += "<section class=\"wide muted\">Evaluations, alert rates and ε come from the agents' releases: "
            + "noised when the agents are private. Refreshes every 5 s. /status has the same figures as JSON; "
            + "/metrics for Prometheus.</section>"
        return page(title: "FedDrift · \(federation.aggregatorID)", refreshSeconds: 5, header: header, body: body)
    }

    /// The newest demand-trend warnings (the rounds' `demand_trends`), newest first.
    static func demandSection(_ history: [RoundHistoryEntry]) -> String {
        var section = "<section id=\"trends\" class=\"wide\"><h2>Demand trends</h2>"
        let releasing = history.last?.demandRegions ?? 0
        guard history.contains(where: { ($0.demandRegions ?? 0) > 0 }) else {
            return section + "<p class=\"muted\">No region releases demand counts yet (<code>trends: {release: true}</code> "
                + "in an agent's configuration; docs/ALERTS.md).</p></section>"
        }
        let warnings = history.reversed().flatMap { entry in (entry.demandTrends ?? []).map { (entry.round, $0) } }.prefix(20)
        section += "<p class=\"muted\">\(releasing) region\(releasing == 1 ? "" : "s") released demand counts in the last "
            + "round; warnings compare each category's share of shoppers with its own history (noised counts).</p>"
        if warnings.isEmpty { return section + "<p>No category has surged or collapsed.</p></section>" }
        section += "<table><tr><th>round</th><th>category</th><th>where</th><th>trend</th><th>change</th>"
            + "<th>shoppers (expected → seen)</th><th>confidence</th></tr>"
        for (round, warning) in warnings {
            let surge = warning.direction == .surge
            section += "<tr data-trend=\"\(warning.category)\"><td>\(round)</td><td>\(warning.categoryName)</td>"
                + "<td>\(HTML.escape(warning.region == DemandTrendDetector.allRegions ? "all regions" : warning.region))</td>"
                + "<td class=\"\(surge ? "ok" : "bad")\">\(surge ? "surge" : "collapse")</td>"
                + "<td>\(String(format: "%+.0f%%", warning.change * 100))</td>"
                + "<td>\(String(format: "%.0f → %.0f", warning.expected, warning.observed))</td>"
                + "<td>\(String(format: "%.4f", warning.confidence))</td></tr>"
        }
        return section + "</table></section>"
    }

    /// The edge agent's page: its state, the thresholds in force, delivery per sink, and its recent
    /// alerts with their explanations.
    package static func agentAlerts(agentID: String, connected: Bool, modelVersion: UInt64?, thresholds: AlertThresholds,
                                    privacy: AgentPrivacyStatus?, deliveries: [String: AlertStore.DeliveryCounts],
                                    alerts: [DriftAlert], now: Date = Date()) -> String {
        var header = "<h1>FedDrift edge agent · \(HTML.escape(agentID))</h1><div class=\"facts\">"
        header += connected ? "<span>connected</span>" : "<span class=\"warn\">disconnected from the aggregator</span>"
        header += "<span>model v\(modelVersion.map(String.init) ?? "none yet")</span>"
        header += "<span>" + String(format: "thresholds: interest shift %.2f, churn risk %.2f nats",
                                    thresholds.interestShift, thresholds.churnRisk) + "</span>"
        if let privacy {
            if privacy.isPrivate {
                let left = max(0, privacy.budget.epsilon - privacy.epsilonSpent)
                header += "<span" + (left < 1e-3 ? " class=\"warn\"" : "") + ">"
                    + String(format: "ε %.3f of %.3g spent", privacy.epsilonSpent, privacy.budget.epsilon)
                    + (left < 1e-3 ? " · BUDGET SPENT" : "") + "</span>"
            } else {
                header += "<span class=\"warn\">NON-PRIVATE</span>"
            }
        }
        header += "</div>"
        var body = ""
        if !deliveries.isEmpty {
            body += "<section id=\"deliveries\" class=\"wide\"><h2>Delivery to people</h2><table><tr><th>sink</th>"
                + "<th>delivered</th><th>pending</th><th>given up</th><th>most attempts</th><th>last error</th></tr>"
            for (sink, counts) in deliveries.sorted(by: { $0.key < $1.key }) {
                let pending = counts.pending > 0 && counts.mostAttempts > 0
                body += "<tr><td>\(HTML.escape(sink))</td><td>\(counts.delivered)</td>"
                    + "<td\(pending ? " class=\"bad\"" : "")>\(counts.pending)</td>"
                    + "<td\(counts.givenUp > 0 ? " class=\"bad\"" : "")>\(counts.givenUp)</td><td>\(counts.mostAttempts)</td>"
                    + "<td>\(HTML.escape(counts.lastError ?? ""))</td></tr>"
            }
            body += "</table></section>"
        }
        body += "<section id=\"alerts\" class=\"wide\"><h2>Recent alerts (newest first)</h2>"
        if alerts.isEmpty {
            body += "<p class=\"muted\">No alert yet.</p>"
        } else {
            body += "<table><tr><th>when</th><th>alert</th><th>shopper</th><th>why</th><th>what changed</th><th>offer now</th></tr>"
            let formatter = ISO8601DateFormatter()
            for alert in alerts.reversed() {
                let kind = alert.kind == .interestShift ? "Interest shift" : "Churn risk"
                var changed: [String] = []
                if !alert.emerging.isEmpty {
                    changed.append("emerging: " + alert.emerging.prefix(3).map { "\($0.category) (\(percent($0.after)))" }
                        .joined(separator: ", "))
                }
                if !alert.fading.isEmpty {
                    changed.append("fading: " + alert.fading.prefix(3).map { "\($0.category) (\(percent($0.before)))" }
                        .joined(separator: ", "))
                }
                if let silence = alert.silenceDays { changed.append(String(format: "silent %.1f days", silence)) }
                let offer = alert.recommendations.prefix(5).map { "item \($0.item)" }.joined(separator: ", ")
                body += "<tr data-alert=\"\(HTML.escape(alert.id))\"><td>"
                    + HTML.escape(formatter.string(from: Date(timeIntervalSince1970: TimeInterval(alert.time))))
                    + "</td><td><span class=\"kind\">\(kind)</span><br><span class=\"muted\">"
                    + String(format: "score %.2f / %.2f", alert.score, alert.threshold) + "</span></td>"
                    + "<td>\(alert.user)</td><td>\(HTML.escape(alert.explanation))</td>"
                    + "<td>\(HTML.escape(changed.joined(separator: "; ")))</td><td>\(HTML.escape(offer))</td></tr>"
            }
            body += "</table>"
        }
        body += "</section><section class=\"wide muted\">Refreshes every 5 s. The alerts' JSON schema and how they "
            + "reach people: docs/ALERTS.md.</section>"
        return page(title: "FedDrift · \(agentID) alerts", refreshSeconds: 5, header: header, body: body)
    }
}
