import FedLogic
import Metrics
package import Prometheus
import Synchronization

/// The edge agent's Prometheus metrics, through swift-metrics into the registry its `/metrics` emits.
/// Counters the services increment as things happen; gauges refreshed from the agent's state at each
/// scrape (``refresh(scored:users:privacy:connected:lastRound:modelVersion:)``).
package final class AgentMetrics: Sendable {
    package let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    /// The scored-events total last exported (the scoring thread keeps the running count).
    private let scoredExported = Mutex(0)

    package init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        // Scoring one event takes microseconds to a millisecond (BENCHMARKS.md: agent scoring).
        factory.durationHistogramBuckets["feddrift_scoring_seconds"] = [
            .microseconds(10), .microseconds(25), .microseconds(50), .microseconds(100), .microseconds(250),
            .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(50),
        ]
        self.factory = factory
        scoring = Metrics.Timer(label: "feddrift_scoring_seconds", factory: factory)
    }

    /// The per-event scoring latency histogram, recorded from the scoring thread.
    private let scoring: Metrics.Timer

    /// The memory guard closed every client connection (``MemoryGuard``).
    package func connectionsDropped() {
        Counter(label: "feddrift_memory_guard_drops_total", factory: factory).increment()
    }

    /// One live event's scoring time.
    package func scored(nanoseconds: Int64) { scoring.recordNanoseconds(nanoseconds) }

    package func ingested(stored: Int, refused: Int) {
        if stored > 0 { Counter(label: "feddrift_events_ingested_total", factory: factory).increment(by: stored) }
        if refused > 0 { Counter(label: "feddrift_events_refused_total", factory: factory).increment(by: refused) }
    }

    /// Seconds to parse and durably store one ingest message.
    package func ingestDuration(seconds: Double) {
        Metrics.Timer(label: "feddrift_ingest_store_seconds", factory: factory).recordNanoseconds(Int64(seconds * 1e9))
    }

    package func alert(kind: String) {
        Counter(label: "feddrift_alerts_total", dimensions: [("kind", kind)], factory: factory).increment()
    }

    /// Alert deliveries to a sink, by outcome (`delivered`, `failed`).
    package func delivery(sink: String, outcome: String, count: Int) {
        Counter(label: "feddrift_alert_deliveries_total", dimensions: [("sink", sink), ("outcome", outcome)], factory: factory)
            .increment(by: count)
    }

    /// Deliveries waiting per sink (failed ones being retried, digests not yet due).
    package func pendingDeliveries(_ pending: [String: Int]) {
        for (sink, count) in pending {
            Gauge(label: "feddrift_alert_deliveries_pending", dimensions: [("sink", sink)], factory: factory).record(Double(count))
        }
    }

    package func refresh(scored: Int, users: Int, privacy: AgentPrivacyStatus?, connected: Bool, lastRound: UInt64,
                         modelVersion: UInt64) {
        let delta = scoredExported.withLock { exported -> Int in
            defer { exported = max(exported, scored) }
            return max(0, scored - exported)
        }
        Counter(label: "feddrift_events_scored_total", factory: factory).increment(by: delta)
        Gauge(label: "feddrift_users", factory: factory).record(Double(users))
        Gauge(label: "feddrift_connected", factory: factory).record(connected ? 1 : 0)
        Gauge(label: "feddrift_last_round", factory: factory).record(Double(lastRound))
        Gauge(label: "feddrift_model_version", factory: factory).record(Double(modelVersion))
        if let privacy, privacy.isPrivate, privacy.epsilonSpent.isFinite {
            Gauge(label: "feddrift_epsilon_spent", factory: factory).record(privacy.epsilonSpent)
            Gauge(label: "feddrift_epsilon_budget", factory: factory).record(privacy.budget.epsilon)
            Gauge(label: "feddrift_epsilon_left", factory: factory).record(max(0, privacy.budget.epsilon - privacy.epsilonSpent))
        }
    }
}
