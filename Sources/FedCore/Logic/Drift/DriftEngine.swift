package import FedModel
import Foundation

/// An interest-drift alert with its proactive recommendations.
package struct DriftAlert: Sendable, Codable, Equatable {
    package struct Category: Sendable, Codable, Equatable {
        package var category: UInt64
        package var weight: Double
    }

    package struct Recommendation: Sendable, Codable, Equatable {
        package var item: UInt64
        package var category: UInt64
        package var score: Double
    }

    package var id: String
    package var user: UInt64
    package var region: String
    /// Event time (unix seconds) of the event that raised it.
    package var time: Int64
    package var score: Double
    package var threshold: Double
    package var kind: String
    package var emerging: [Category]
    package var fading: [Category]
    package var modelVersion: UInt64
    package var recommendations: [Recommendation]

    enum CodingKeys: String, CodingKey {
        case id, user, region, time, score, threshold, kind, emerging, fading, recommendations
        case modelVersion = "model_version"
    }
}

/// The agent's per-event path: the user's LSTM state (``StreamingScorer``, for recommendations), the
/// user's ``SwitchDetector`` state (its prior is the global model's unconditional next-category
/// distribution, so it learns nothing from other regions' raw behaviour), the ``AlertRule``, regional
/// item popularity, and — on an alarm — an alert with recommendations for the emerging interest. Mutable and unsynchronised by design (the per-event
/// path takes no lock), so it is not `Sendable`: one owner uses it on one thread (the agent's
/// `LiveScoring` thread, a benchmark, an evaluation).
package final class DriftEngine {
    package struct Settings: Sendable {
        package var region: String
        /// The threshold before the aggregator's first calibration, in the detector's score units.
        package var coldStartThreshold = 2.0
        package var recommendations = 10
        /// Popularity half-life in seconds of event time (recency weighting of regional item popularity).
        package var popularityHalfLife: Double = 2 * 86_400
        /// Items a user bought within this many seconds are not recommended to them.
        package var purchaseExclusion: Int64 = 7 * 86_400
        package var itemsPerCategory = 64
        package var detector = SwitchDetector.Settings()
        package var rule = AlertRule()
        package init(region: String) { self.region = region }
    }

    struct UserSlot {
        var lstm: [Float]
        var drift = SwitchDetector.UserState()
        var alerting = AlertRule.State()
        var lastTime: Int64?
        var purchases: [(item: UInt64, time: Int64)] = []
    }

    package let settings: Settings
    package private(set) var catalog: CategoryCatalog
    package private(set) var modelVersion: UInt64
    /// The threshold in force: the aggregator's newest, or the cold-start value until one arrives.
    package var threshold: Double
    private var scorer: StreamingScorer
    private var detector: SwitchDetector
    private var users: [UInt64: UserSlot] = [:]
    /// Per model category: item → recency-weighted count (value × exp(time / τ) relative to `epoch`).
    private var popularity: [Int32: [UInt64: Double]] = [:]
    private var epoch: Int64?
    private var counter: UInt64 = 0
    package private(set) var eventsScored = 0

    package init(parameters: LSTMParameters<Float>, modelVersion: UInt64, catalog: CategoryCatalog, settings: Settings) {
        precondition(parameters.shape.categories == catalog.categories, "catalog and model disagree on categories")
        self.settings = settings
        self.catalog = catalog
        self.modelVersion = modelVersion
        scorer = StreamingScorer(parameters: parameters)
        detector = SwitchDetector(settings: settings.detector, prior: scorer.initialDistribution())
        threshold = settings.coldStartThreshold
    }

    package var userCount: Int { users.count }

    /// Whether `user` has been scored.
    package func knows(_ user: UInt64) -> Bool { users[user] != nil }


    /// Swaps in a new global model; users' states carry over (same shape).
    package func update(parameters: LSTMParameters<Float>, modelVersion: UInt64) {
        guard parameters.shape == scorer.shape else { return }
        scorer = StreamingScorer(parameters: parameters)
        detector = SwitchDetector(settings: settings.detector, prior: scorer.initialDistribution())
        self.modelVersion = modelVersion
    }

    /// Brings a user's state up to date with a past event (history replay at start): the LSTM state,
    /// the detector's baselines and profiles, and popularity move; no alert can fire.
    package func warm(_ event: BehaviorEvent) {
        let threshold = self.threshold
        self.threshold = .infinity
        _ = process(event)
        self.threshold = threshold
        eventsScored -= 1
    }

    /// Scores one event and returns an alert when it reveals an interest shift.
    package func process(_ event: BehaviorEvent) -> DriftAlert? {
        eventsScored += 1
        let category = catalog.modelIndex(of: event.category)
        // Taken out of the dictionary (not copied) so that its arrays are mutated in place.
        var slot = users.removeValue(forKey: event.user) ?? UserSlot(lstm: [Float](repeating: 0, count: scorer.stateSize))
        if slot.lastTime == nil { scorer.reset(&slot.lstm) }
        let gap = Int(EventSequence.gapBucket(seconds: slot.lastTime.map { Double(max(0, event.timestamp - $0)) }))
        scorer.step(&slot.lstm, category: Int(category), action: Int(event.action.rawValue), gap: gap)
        slot.lastTime = max(slot.lastTime ?? event.timestamp, event.timestamp)
        if event.action == .purchase {
            slot.purchases.append((event.item, event.timestamp))
            if slot.purchases.count > 32 { slot.purchases.removeFirst() }
        }
        recordPopularity(item: event.item, category: category, time: event.timestamp, action: event.action)
        let score = detector.update(&slot.drift, category: category)
        let alarm = settings.rule.observe(score, threshold: threshold, state: &slot.alerting)
        users[event.user] = slot
        guard alarm else { return nil }
        counter += 1
        let change = detector.direction(slot.drift, count: 3)
        let emerging = change.emerging.filter { $0.category != catalog.outOfVocabulary }
        return DriftAlert(
            id: "\(settings.region)-\(event.user)-\(event.timestamp)-\(counter)", user: event.user, region: settings.region,
            time: event.timestamp, score: score, threshold: threshold, kind: "interest_shift",
            emerging: emerging.map { .init(category: platformCategory($0.category), weight: $0.after - $0.before) },
            fading: change.fading.filter { $0.category != catalog.outOfVocabulary }
                .map { .init(category: platformCategory($0.category), weight: $0.before - $0.after) },
            modelVersion: modelVersion,
            recommendations: recommend(user: event.user, slot: slot, categories: emerging.map(\.category),
                                       now: event.timestamp))
    }

    /// Top-N items for `user` from `categories` (all in-vocabulary categories when empty): ranked by the
    /// model's next-category probability × the item's recency-weighted regional popularity, without
    /// items the user bought recently.
    package func recommend(user: UInt64, categories: [Int32] = [], count: Int? = nil) -> [DriftAlert.Recommendation] {
        guard let slot = users[user] else { return [] }
        return recommend(user: user, slot: slot, categories: categories, now: slot.lastTime ?? 0, count: count)
    }

    private func recommend(user: UInt64, slot: UserSlot, categories: [Int32], now: Int64,
                           count: Int? = nil) -> [DriftAlert.Recommendation] {
        let limit = count ?? settings.recommendations
        // p(category | the user's history) from the current state: exp(−surprise).
        func probability(_ category: Int32) -> Double {
            exp(-Double(scorer.surprise(of: Int(category), in: slot.lstm)))
        }
        let excluded = Set(slot.purchases.filter { now - $0.time <= settings.purchaseExclusion }.map(\.item))
        let pool = categories.isEmpty ? Array(popularity.keys).filter { $0 != catalog.outOfVocabulary } : categories
        var candidates: [DriftAlert.Recommendation] = []
        for category in pool {
            let p = probability(category)
            for (item, weight) in popularity[category] ?? [:] where !excluded.contains(item) {
                candidates.append(.init(item: item, category: platformCategory(category), score: p * weight))
            }
        }
        return Array(candidates.sorted { ($0.score, $1.item) > ($1.score, $0.item) }.prefix(limit))
    }

    private func recordPopularity(item: UInt64, category: Int32, time: Int64, action: BehaviorEvent.Action) {
        guard category != catalog.outOfVocabulary else { return }
        var reference = epoch ?? time
        var exponent = Double(time - reference) * log(2) / settings.popularityHalfLife
        if exponent > 300 {
            // Move the reference forward (rescaling every weight) before the factors overflow.
            let rescale = exp(-exponent)
            for key in popularity.keys { popularity[key] = popularity[key]?.mapValues { $0 * rescale } }
            reference = time
            exponent = 0
        }
        epoch = reference
        // Weight grows with event time, so older interactions count less relative to newer ones.
        let weight = DriftDetector.weight(of: action.rawValue) * exp(exponent)
        // In place: copying a category's dictionary out and back would copy it on every event.
        popularity[category, default: [:]][item, default: 0] += weight
        if let items = popularity[category], items.count > settings.itemsPerCategory * 2 {
            // Keep the most popular half: bounded memory per category.
            let kept = items.sorted { $0.value > $1.value }.prefix(settings.itemsPerCategory)
            popularity[category] = Dictionary(uniqueKeysWithValues: kept.map { ($0.key, $0.value) })
        }
    }

    private func platformCategory(_ index: Int32) -> UInt64 {
        Int(index) < catalog.entries.count ? catalog.entries[Int(index)].category : UInt64(index)
    }
}
