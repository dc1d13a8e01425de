package import FedLogic

/// A query on the agent's recommendation socket (`alerts.recommend`, a ROUTER that any REQ client can
/// ask): `{"user": U, "n": N}` as JSON. The service and `edge-agent recommend` both use these types,
/// so the protocol is defined once.
package struct RecommendationQuery: Codable, Sendable, Equatable {
    package static let defaultCount = 10
    package static let maxCount = 100

    package var user: UInt64
    /// Items wanted; default ``defaultCount``, clamped to 1...``maxCount``.
    package var n: Int?

    package init(user: UInt64, n: Int? = nil) {
        self.user = user
        self.n = n
    }

    package var count: Int { min(max(n ?? Self.defaultCount, 1), Self.maxCount) }
}

/// The reply: `{"user": U, "recommendations": [{"item", "category", "score"}]}`, or `{"error": "..."}`.
package struct RecommendationAnswer: Codable, Sendable, Equatable {
    package var user: UInt64?
    package var recommendations: [DriftAlert.Recommendation]?
    package var error: String?

    package init(user: UInt64, recommendations: [DriftAlert.Recommendation]) {
        self.user = user
        self.recommendations = recommendations
    }

    package init(error: String) { self.error = error }

    package static let malformedQuery = RecommendationAnswer(error: #"expected {"user": <id>, "n": <count>}"#)

    package static func unknownUser(_ user: UInt64) -> RecommendationAnswer {
        RecommendationAnswer(error: "user \(user) has no scored events yet (or no model yet)")
    }
}
