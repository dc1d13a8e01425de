import Synchronization

/// The agent's scoring of live events, shared by the ingest task (events) and the federation session
/// (new global models, thresholds). Scoring starts once a global model is known.
package final class DriftScoring: Sendable {
    private let engine = Mutex<DriftEngine?>(nil)
    private let catalog: CategoryCatalog
    private let settings: DriftEngine.Settings
    /// Replays history into a new engine (each user's recent stored events), so that live events are
    /// scored in the context of what the user did before.
    private let history: (@Sendable (DriftEngine) -> Void)?

    package init(catalog: CategoryCatalog, settings: DriftEngine.Settings,
                 history: (@Sendable (DriftEngine) -> Void)? = nil) {
        self.catalog = catalog
        self.settings = settings
        self.history = history
    }

    /// Installs a new global model (keeps users' states when the shape is unchanged).
    package func install(_ parameters: LSTMParameters<Float>, modelVersion: UInt64) {
        guard parameters.shape.categories == catalog.categories else { return }
        engine.withLock { engine in
            if let current = engine, current.catalogCategories == parameters.shape.categories {
                current.update(parameters: parameters, modelVersion: modelVersion)
            } else {
                let created = DriftEngine(parameters: parameters, modelVersion: modelVersion, catalog: catalog,
                                          settings: settings)
                history?(created)
                engine = created
            }
        }
    }

    /// Applies the aggregator's newest threshold.
    package func setThreshold(_ threshold: Double) { engine.withLock { $0?.threshold = threshold } }

    /// Scores `events` in order; returns the alerts they raised. Nothing happens before a model is known.
    package func process(_ events: [BehaviorEvent]) -> [DriftAlert] {
        engine.withLock { engine in
            guard let engine else { return [] }
            return events.compactMap { engine.process($0) }
        }
    }

    /// Top-`count` items for `user` over all categories (the ordinary, non-alert recommendation);
    /// nil when the user has not been scored yet or no model is known.
    package func recommend(user: UInt64, count: Int) -> [DriftAlert.Recommendation]? {
        engine.withLock { engine in
            guard let engine, engine.knows(user) else { return nil }
            return engine.recommend(user: user, count: count)
        }
    }

    /// Every scored user's current drift score (for the round's DP histogram).
    package func currentScores() -> [Double] { engine.withLock { $0?.currentScores() ?? [] } }

    /// The threshold in force.
    package var threshold: Double? { engine.withLock { $0?.threshold } }

    package var isScoring: Bool { engine.withLock { $0 != nil } }
}

extension DriftEngine {
    var catalogCategories: Int { catalog.categories }
}
