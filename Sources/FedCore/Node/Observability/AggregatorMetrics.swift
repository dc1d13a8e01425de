import Metrics
package import Prometheus
import Synchronization

/// The aggregator's Prometheus metrics, recorded through swift-metrics into one registry that the
/// operator endpoint's `/metrics` emits. Names: `feddrift_<what>`; docs/OPERATIONS.md lists them.
package final class AggregatorMetrics: Sendable {
    package let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let epsilons = Mutex<[String: Double]>([:])

    package init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        // Rounds last seconds to minutes.
        factory.defaultDurationHistogramBuckets = [.milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
                                                   .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
                                                   .seconds(120), .seconds(300)]
        self.factory = factory
    }

    /// The memory guard closed every client connection (``MemoryGuard``).
    package func connectionsDropped() {
        Counter(label: "feddrift_memory_guard_drops_total", factory: factory).increment()
    }

    /// One finished round.
    package func record(_ report: RoundReport, thresholds: (interestShift: Double, churnRisk: Double)?) {
        Counter(label: "feddrift_rounds_total", dimensions: [("outcome", report.aggregated ? "aggregated" : "failed_quorum")],
                factory: factory).increment()
        Metrics.Timer(label: "feddrift_round_duration_seconds", factory: factory)
            .recordNanoseconds(Int64(report.seconds * 1e9))
        Counter(label: "feddrift_updates_accepted_total", factory: factory).increment(by: report.agents.count)
        for (reason, count) in report.rejections where count > 0 {
            Counter(label: "feddrift_updates_rejected_total", dimensions: [("reason", reason)], factory: factory)
                .increment(by: count)
        }
        Gauge(label: "feddrift_model_version", factory: factory).record(Double(report.modelVersion))
        Gauge(label: "feddrift_agents_live", factory: factory).record(Double(report.liveAgents))
        Gauge(label: "feddrift_agents_enrolled", factory: factory).record(Double(report.enrolledAgents))
        Gauge(label: "feddrift_secure_aggregation", factory: factory).record(report.secureAggregation ? 1 : 0)
        if report.evaluatedUsers > 0 {
            Gauge(label: "feddrift_heldout_top10", factory: factory).record(report.top10)
            Gauge(label: "feddrift_heldout_loss", factory: factory).record(report.heldOutLoss)
        }
        if let thresholds {
            Gauge(label: "feddrift_threshold", dimensions: [("kind", "interest_shift")], factory: factory)
                .record(thresholds.interestShift)
            Gauge(label: "feddrift_threshold", dimensions: [("kind", "churn_risk")], factory: factory)
                .record(thresholds.churnRisk)
        }
    }

    /// ε an agent's ledger showed spent in its newest verified receipt.
    package func recordEpsilon(agent: String, spent: Double) {
        Gauge(label: "feddrift_agent_epsilon_spent", dimensions: [("agent", agent)], factory: factory).record(spent)
        epsilons.withLock { $0[agent] = spent }
    }

    /// Agents heard within the live window.
    /// A demand-trend warning, by direction (`surge`, `collapse`).
    package func demandTrend(direction: String) {
        Counter(label: "feddrift_demand_trends_total", dimensions: [("direction", direction)], factory: factory).increment()
    }

    /// ε spent per agent, from the newest verified receipts (the dashboard's history).
    package var epsilonSpent: [String: Double] { epsilons.withLock { $0 } }

    package func recordLiveAgents(_ count: Int) {
        Gauge(label: "feddrift_agents_live", factory: factory).record(Double(count))
    }
}
