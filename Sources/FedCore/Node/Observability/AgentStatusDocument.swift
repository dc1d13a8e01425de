package import FedLogic
package import Foundation

/// The edge agent's `/status` JSON: the link, the protocol's status, live ingest and scoring, the
/// thresholds in force and the privacy budget.
package enum AgentStatusDocument {
    package static func make(configuration: EdgeAgentConfiguration, session: AgentSession.Snapshot,
                             scoring: LiveScoring.Progress, thresholds: AlertThresholds, privacy: AgentPrivacyStatus?,
                             ingest: (stored: Int, refused: Int, duplicates: Int),
                             deliveries: [String: AlertStore.DeliveryCounts] = [:]) -> Data {
        let status = session.status
        var document: [String: Any] = [
            "agent_id": configuration.id, "aggregator": configuration.aggregatorEndpoints.joined(separator: ","),
            "connected": session.connected, "registered": session.registered,
            "participating": status?.participating ?? true, "stopped_reason": status?.stoppedReason ?? "",
            "last_round": status?.lastRound ?? 0, "refused_rounds": status?.refusedRounds ?? 0,
            "model_version": scoring.modelVersion.map { Int($0) } ?? -1,
            "events_ingested": ingest.stored, "events_refused": ingest.refused,
            "rows_already_stored": ingest.duplicates, "events_scored": scoring.eventsScored,
            "users": scoring.users, "replaying": scoring.replaying,
            "thresholds": ["interest_shift": thresholds.interestShift, "churn_risk": thresholds.churnRisk],
        ]
        if let privacy { document["privacy"] = privacy.document }
        if !deliveries.isEmpty {
            document["deliveries"] = deliveries.mapValues { counts -> [String: Any] in
                var entry: [String: Any] = ["pending": counts.pending, "delivered": counts.delivered,
                                            "given_up": counts.givenUp, "most_attempts": counts.mostAttempts]
                if let error = counts.lastError { entry["last_error"] = error }
                return entry
            }
        }
        return (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])) ?? Data("{}".utf8)
    }
}
