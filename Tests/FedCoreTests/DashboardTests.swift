@testable import FedLogic
@testable import FedNode
import Foundation
import TestSupport
import Testing

/// The dashboard's charts plot the real points: every mark carries its data and sits where the
/// chart's stated scales put it; the page escapes what it shows.
@Suite("Dashboard pages: SVG charts that plot the real points")
struct DashboardTests {
    static func history() -> [RoundHistoryEntry] {
        let top10: [Double] = [0.026, 0.175, 0.396, 0.382, 0.437, 0.368]
        return (1...6).map { round -> RoundHistoryEntry in
            let r = Double(round)
            let failed = round == 4
            let version: UInt64 = failed ? 3 : UInt64(round > 4 ? round - 1 : round)
            let epsilon: [String: Double] = ["region-1": 0.6 * r, "<b>region-2</b>": 0.5 * r]
            let rate: Double? = round == 1 ? nil : 40 - 2 * r
            return RoundHistoryEntry(
                time: 1_800_000_000 + r * 8, round: UInt64(round), aggregated: !failed, secureAggregation: true,
                acceptedAgents: failed ? 1 : 3, liveAgents: 3, enrolledAgents: 3, seconds: 6 + Double(round % 3),
                modelVersion: version, evaluatedModelVersion: UInt64(round - 1), evaluatedUsers: 3_000,
                top1: 0.05 + 0.01 * r, top10: top10[round - 1], interestShiftThreshold: 2 + 0.1 * r,
                churnRiskThreshold: 5 - 0.05 * r, alertsPer10kEvents: rate, churnPer1kShopperDays: 3 + 0.1 * r,
                epsilonSpent: epsilon)
        }
    }

    static func federation(_ history: [RoundHistoryEntry]) -> DashboardPages.Federation {
        DashboardPages.Federation(
            aggregatorID: "aggregator", round: 6, openRound: 7, secondsToDeadline: 12, modelVersion: 5, liveAgents: 2,
            minAgents: 3, privacy: ["mode": "private", "secure_aggregation": "on (threshold 2 of 3 agents)"],
            alertBudgetPer10k: 25, churnBudgetPer1kShopperDays: 3, agents: [
                .init(id: "region-1", live: true, lastSeenSeconds: 1.5, lastRound: 6, accepted: 6, rejected: 0,
                      epsilonSpent: 3.6, epsilonBudget: 8),
                .init(id: "<b>region-2</b>", live: false, lastSeenSeconds: 600, lastRound: 5, accepted: 5, rejected: 1,
                      epsilonSpent: 3.0, epsilonBudget: 3),
            ], history: history)
    }

    @Test("Every chart's marks are the history's values, drawn where the stated scales put them; a moved mark is caught")
    func chartsPlotTheRealPoints() throws {
        let history = Self.history()
        let html = DashboardPages.aggregator(Self.federation(history))
        let charts = SVGReader.charts(in: html)
        #expect(charts.count == 6)
        for chart in charts { #expect(chart.misplaced().isEmpty, "\(chart.label): \(chart.misplaced().map(\.series))") }
        let accuracy = try #require(charts.first { $0.label.hasPrefix("Held-out") })
        #expect(accuracy.points("top-10").map(\.x) == history.map { Double($0.evaluatedModelVersion) })
        #expect(accuracy.points("top-10").map(\.y) == history.map(\.top10))
        #expect(accuracy.points("top-1").map(\.y) == history.map(\.top1))
        #expect(accuracy.yDomain == (0, 1))
        let rounds = try #require(charts.first { $0.label.hasPrefix("Rounds") })
        #expect(rounds.marks.allSatisfy(\.isBar) && rounds.points("duration").map(\.y) == history.map(\.seconds))
        // The failed round is drawn red, the others green.
        #expect(html.contains("data-x=\"4.0\" data-y=\"7.0\" x=") && html.components(separatedBy: "fill=\"#d62728\"><title>duration 4").count == 2)
        let alerts = try #require(charts.first { $0.label.hasPrefix("Interest-shift alert rate") })
        #expect(alerts.points("interest shifts").map(\.x) == (2...6).map(Double.init), "round 1 sent no release: no point")
        let privacy = try #require(charts.first { $0.label.hasPrefix("Privacy budget") })
        #expect(privacy.points("region-1").map(\.y) == history.map { $0.epsilonSpent["region-1"] ?? -1 })
        #expect(html.contains("data-reference=\"budget of region-1\" data-y=\"8.0\""))

        // Control: the checker finds a point moved by one pixel.
        let moved = html.replacingOccurrences(of: "cy=\"\(SVGChart.number(accuracy.marks[2].at.y))\"",
                                              with: "cy=\"\(SVGChart.number(accuracy.marks[2].at.y + 1))\"")
        let movedChart = try #require(SVGReader.charts(in: moved).first { $0.label.hasPrefix("Held-out") })
        #expect(movedChart.misplaced().count >= 1)
    }

    @Test("The page says what an operator must know and escapes what it shows")
    func pageContent() {
        let html = DashboardPages.aggregator(Self.federation(Self.history()))
        #expect(html.contains("BELOW QUORUM"), "2 live of quorum 3")
        #expect(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"))
        #expect(!html.contains("<b>region-2</b>") && html.contains("&lt;b&gt;region-2&lt;/b&gt;"))
        #expect(html.contains("ε 3.000 of 3") && html.contains("SPENT"), "region-2 spent its whole budget")
        #expect(!html.contains("src=\"http") && !html.contains("<script"), "no external asset, no script")
        #expect(html.contains("No region releases demand counts yet"))
        // Demand trends: the newest warnings, with where and how much.
        var history = Self.history()
        history[5].demandRegions = 3
        history[5].demandTrends = [DemandTrendWarning(category: 17, region: DemandTrendDetector.allRegions, direction: .collapse,
                                                      change: -0.62, confidence: 0.99991, zScore: -5.1, observed: 38,
                                                      expected: 100, period: 6)]
        let trends = DashboardPages.aggregator(Self.federation(history))
        #expect(trends.contains("data-trend=\"17\"") && trends.contains("all regions") && trends.contains("-62%")
                && trends.contains("100 → 38") && trends.contains("3 regions released demand counts"), "\(trends)")
        // No history yet: the charts say so instead of drawing nothing.
        let empty = DashboardPages.aggregator(Self.federation([]))
        #expect(empty.contains("no data yet"))
    }

    @Test("The agent's alerts page lists alerts newest first with explanations, and sink deliveries")
    func agentPage() {
        let alerts = (1...3).map { number in
            DriftAlert(id: "region-1-\(number)", user: UInt64(100 + number), region: "region-1", time: 1_512_000_000 + Int64(number),
                       score: 9, threshold: 8, kind: number == 2 ? .churnRisk : .interestShift,
                       emerging: [.init(category: 110, before: 0, after: 0.6)], fading: [], events: 4, modelVersion: 3,
                       recommendations: [.init(item: 1_001, category: 110, score: 0.2)], explanation: "because <\(number)>")
        }
        let html = DashboardPages.agentAlerts(agentID: "region-1", connected: false, modelVersion: 3,
                                              thresholds: AlertThresholds(interestShift: 2.5, churnRisk: 5),
                                              privacy: nil, deliveries: ["crm": .init(pending: 2, delivered: 5, mostAttempts: 3,
                                                                                       lastError: "HTTP 503")],
                                              alerts: alerts)
        let order = ["region-1-3", "region-1-2", "region-1-1"].compactMap { html.range(of: "data-alert=\"\($0)\"")?.lowerBound }
        #expect(order.count == 3 && order == order.sorted(), "newest first")
        #expect(html.contains("because &lt;2&gt;") && html.contains("Churn risk") && html.contains("item 1001"))
        #expect(html.contains("disconnected") && html.contains("HTTP 503"))
    }
}
