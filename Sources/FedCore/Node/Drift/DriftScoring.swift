package import FedIO
package import FedLogic
package import FedModel
import Foundation
import Synchronization

/// The agent's scoring of live events, shared by the ingest task (events) and the federation session
/// (new global models, thresholds). Scoring starts once a global model is known.
package final class DriftScoring: Sendable {
    private let engine = Mutex<DriftEngine?>(nil)
    private let starting = Mutex<(started: Bool, latest: (parameters: LSTMParameters<Float>, version: UInt64)?)>((false, nil))
    private let pendingThreshold = Mutex<Double?>(nil)
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

    /// Installs a new global model (keeps users' states when the shape is unchanged). The first model
    /// creates the engine on its own thread — replaying history can take a while on a large store — and
    /// live events wait for it; models arriving meanwhile are applied when it is ready. An event stored
    /// just before the replay read the store and scored just after it is counted twice (a window of a
    /// few milliseconds at start).
    package func install(_ parameters: LSTMParameters<Float>, modelVersion: UInt64) {
        guard parameters.shape.categories == catalog.categories else { return }
        let applied = engine.withLock { engine -> Bool in
            guard let engine else { return false }
            engine.update(parameters: parameters, modelVersion: modelVersion)
            return true
        }
        if applied { return }
        let first = starting.withLock { state -> Bool in
            state.latest = (parameters, modelVersion)
            defer { state.started = true }
            return !state.started
        }
        guard first else { return }
        let thread = Thread { [self] in
            // The replay holds the lock, so live events wait for it (none is skipped or scored out of
            // order) while the session's loop, which only started this thread, carries on.
            engine.withLock { engine in
                let created = DriftEngine(parameters: parameters, modelVersion: modelVersion, catalog: catalog,
                                          settings: settings)
                history?(created)
                if let latest = starting.withLock({ $0.latest }), latest.version != modelVersion {
                    created.update(parameters: latest.parameters, modelVersion: latest.version)
                }
                if let threshold = pendingThreshold.withLock({ $0 }) { created.threshold = threshold }
                engine = created
            }
        }
        thread.start()
    }

    /// Applies the aggregator's newest threshold.
    package func setThreshold(_ threshold: Double) {
        pendingThreshold.withLock { $0 = threshold }
        engine.withLock { $0?.threshold = threshold }
    }

    /// Scores `events` in order; returns the alerts they raised. Nothing happens before a model is known.
    package func process(_ events: [BehaviorEvent]) -> [DriftAlert] {
        while true {
            let alerts = engine.withLock { engine in engine.map { engine in events.compactMap { engine.process($0) } } }
            if let alerts { return alerts }
            // No model yet: nothing to score with. Model arrived, engine thread not yet holding the lock:
            // wait the moment it takes to start, so these events are scored after the replay.
            guard starting.withLock({ $0.started }) else { return [] }
            usleep(1_000)
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

}

extension DriftEngine {
    var catalogCategories: Int { catalog.categories }
}
