package import FedModel
import Foundation

/// An interest-drift alert with its proactive recommendations.
package struct DriftAlert: Sendable, Codable, Equatable {
    /// A category that emerged or faded: its share of the shopper's long-run activity (`before`) and
    /// of their recent category changes (`after`); `weight` is the size of the move, |after − before|.
    package struct Category: Sendable, Codable, Equatable {
        package var category: UInt64
        package var weight: Double
        package var before: Double
        package var after: Double

        package init(category: UInt64, before: Double, after: Double) {
            (self.category, self.before, self.after) = (category, before, after)
            weight = abs(after - before)
        }
    }

    /// The kinds of alert.
    package enum Kind: String, Sendable, Codable, CaseIterable {
        /// The shopper's interests moved to other categories.
        case interestShift = "interest_shift"
        /// An active shopper went silent for longer than their habits make likely.
        case churnRisk = "churn_risk"
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
    package var kind: Kind
    package var emerging: [Category]
    package var fading: [Category]
    /// Interest shift: the shopper's events since the most probable changepoint (nil when unclear).
    package var events: Int?
    /// Churn risk: the silence (days) when the warning was raised, and the shopper's usual sessions a day.
    package var silenceDays: Double?
    package var usualSessionsPerDay: Double?
    package var modelVersion: UInt64
    package var recommendations: [Recommendation]
    /// Why, in words a merchandiser reads.
    package var explanation: String

    enum CodingKeys: String, CodingKey {
        case id, user, region, time, score, threshold, kind, emerging, fading, events, recommendations, explanation
        case modelVersion = "model_version", silenceDays = "silence_days", usualSessionsPerDay = "usual_sessions_per_day"
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
        /// Churn risk: the detector, the threshold (nats) before the aggregator's first calibration, and
        /// the event-time clock on which silences are checked.
        package var churn = ChurnDetector.Settings()
        package var coldStartChurnThreshold = 8.0
        package var churnCheckSeconds: Int64 = 3_600
        /// Events the LSTM state is built from when recommendations are needed: the model's training
        /// window (`rounds.sequence_length`), so the state is the one the model learned to read.
        package var modelWindow = 50
        package init(region: String) { self.region = region }
    }

    struct UserSlot {
        /// The user's most recent model inputs (``ModelInput``), at most 2 × ``Settings/modelWindow``
        /// (trimmed to the window when full, so the trim is amortised): the LSTM state is computed from
        /// them only when recommendations are needed.
        var recent: [UInt32] = []
        var drift = SwitchDetector.UserState()
        var churn = ChurnDetector.UserState()
        var alerting = AlertRule.State()
        var lastTime: Int64?
        var purchases: [(item: UInt64, time: Int64)] = []
    }

    package let settings: Settings
    package private(set) var catalog: CategoryCatalog
    package private(set) var modelVersion: UInt64
    /// The threshold in force: the aggregator's newest, or the cold-start value until one arrives.
    package var threshold: Double
    /// The churn-risk threshold in force (nats of surprise at the silence), likewise. Setting it
    /// reschedules every shopper's silence check (once a round, O(users)).
    package var churnThreshold: Double {
        didSet {
            guard churnThreshold != oldValue else { return }
            for index in users.indices { churn.schedule(&users.values[index].churn, threshold: churnThreshold) }
        }
    }
    private var scorer: StreamingScorer
    /// Scratch LSTM state for ``materialise(_:)`` (one, reused: no allocation per query).
    private var state: [Float]
    private var detector: SwitchDetector
    private let churn: ChurnDetector
    /// The next time (event time) at which silences are checked; nil until the first live event.
    private var nextCheck: Int64?
    /// The last 128 live event times (a ring), how many it holds, where the next goes, and how many are
    /// at or after `nextCheck`.
    private var recentTimes = [Int64](repeating: 0, count: 128)
    private var recentCount = 0, recentNext = 0, reachedNext = 0
    private var users: [UInt64: UserSlot] = [:]
    /// Per model category: item → recency-weighted count (value × exp(time / τ) relative to `epoch`).
    private var popularity: [Int32: [UInt64: Double]] = [:]
    private var epoch: Int64?
    private var counter: UInt64 = 0
    /// Random per engine, so that alert ids (region, event time, this, counter) stay unique across
    /// restarts — the alert store ignores a second alert with an id it holds — without a user id in them.
    private let instance = String(UInt32.random(in: 0...UInt32.max), radix: 16)
    package private(set) var eventsScored = 0

    package init(parameters: LSTMParameters<Float>, modelVersion: UInt64, catalog: CategoryCatalog, settings: Settings) {
        precondition(parameters.shape.categories == catalog.categories, "catalog and model disagree on categories")
        precondition(catalog.categories <= 1 << 24, "model inputs pack categories in 24 bits")
        self.settings = settings
        self.catalog = catalog
        self.modelVersion = modelVersion
        scorer = StreamingScorer(parameters: parameters)
        state = [Float](repeating: 0, count: scorer.stateSize)
        detector = SwitchDetector(settings: settings.detector, prior: scorer.initialDistribution())
        threshold = settings.coldStartThreshold
        churnThreshold = settings.coldStartChurnThreshold
        churn = ChurnDetector(settings: settings.churn)
    }

    package var userCount: Int { users.count }

    /// Whether `user` has been scored.
    package func knows(_ user: UInt64) -> Bool { users[user] != nil }


    /// Drops these users' states (they moved to another shard of the region).
    package func forget(_ gone: Set<UInt64>) {
        for user in gone { users.removeValue(forKey: user) }
    }

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
        recordPopularity(item: event.item, category: category, time: event.timestamp, action: event.action)
        // The slot is updated in place in the dictionary (one lookup, no copy of its arrays).
        let (score, alarm) = update(&users[event.user, default: UserSlot()], with: event, category: category)
        guard alarm, let slot = users[event.user] else { return nil }
        counter += 1
        let change = detector.direction(slot.drift, count: 3)
        let emerging = change.emerging.filter { $0.category != catalog.outOfVocabulary }
        var alert = DriftAlert(
            id: "\(settings.region)-\(event.timestamp)-\(instance)-\(counter)", user: event.user, region: settings.region,
            time: event.timestamp, score: score, threshold: threshold, kind: .interestShift,
            emerging: emerging.map { .init(category: platformCategory($0.category), before: $0.before, after: $0.after) },
            fading: change.fading.filter { $0.category != catalog.outOfVocabulary }
                .map { .init(category: platformCategory($0.category), before: $0.before, after: $0.after) },
            events: detector.eventsSinceChange(slot.drift), modelVersion: modelVersion,
            recommendations: recommend(user: event.user, slot: slot, categories: emerging.map(\.category),
                                       now: event.timestamp),
            explanation: "")
        alert.explanation = AlertExplanation.text(alert)
        return alert
    }

    /// Takes the time of the next live event and returns the churn-risk warnings of every shopper whose
    /// silence became unlikely by the newest check time the event-time clock passed (checks every
    /// ``Settings/churnCheckSeconds``). The clock is a watermark: it passes a check time once 7/8 of the
    /// last 128 events are at or after it, so one wrongly stamped or far-future event cannot make every
    /// shopper look silent; a jump of several periods checks once, at the latest. History replay
    /// (``warm(_:)``) does not move the clock.
    package func advanceClock(to time: Int64) -> [DriftAlert] {
        let period = settings.churnCheckSeconds
        guard let next = nextCheck else {
            nextCheck = (time / period + 1) * period
            recordTime(time)
            return []
        }
        recordTime(time)
        guard time >= next, reachedNext * 8 >= recentCount * 7 else { return [] }
        // Rare (once a period): the watermark is the eighth-quantile of the recent times.
        let watermark = recentTimes.prefix(recentCount).sorted()[recentCount / 8]
        let now = max(next, watermark / period * period)
        nextCheck = now + period
        reachedNext = recentTimes.prefix(recentCount).filter { $0 >= now + period }.count
        var raised: [DriftAlert] = []
        for index in users.indices where users.values[index].churn.due <= now {
            guard churn.check(&users.values[index].churn, now: now, threshold: churnThreshold) else { continue }
            let user = users.keys[index], slot = users.values[index]
            raised.append(churnAlert(user: user, slot: slot, now: now))
        }
        return raised
    }

    /// Puts `time` into the ring of recent event times, keeping the count of those ≥ the next check.
    private func recordTime(_ time: Int64) {
        let threshold = nextCheck ?? .max
        if recentCount == recentTimes.count {
            if recentTimes[recentNext] >= threshold { reachedNext -= 1 }
        } else {
            recentCount += 1
        }
        recentTimes[recentNext] = time
        if time >= threshold { reachedNext += 1 }
        recentNext = (recentNext + 1) % recentTimes.count
    }

    private func churnAlert(user: UInt64, slot: UserSlot, now: Int64) -> DriftAlert {
        counter += 1
        let top = detector.topCategories(slot.drift, count: 3).filter { $0.category != catalog.outOfVocabulary }
        let silence = Double(now - (slot.churn.lastTime ?? now)) / 86_400
        var alert = DriftAlert(
            id: "\(settings.region)-\(now)-\(instance)-\(counter)", user: user, region: settings.region, time: now,
            score: churn.risk(slot.churn, now: now), threshold: churnThreshold, kind: .churnRisk, emerging: [],
            fading: top.map { .init(category: platformCategory($0.category), before: $0.share, after: 0) },
            events: nil, silenceDays: silence, usualSessionsPerDay: churn.sessionsPerDay(slot.churn),
            modelVersion: modelVersion,
            recommendations: recommend(user: user, slot: slot, categories: top.map(\.category), now: now),
            explanation: "")
        alert.explanation = AlertExplanation.text(alert)
        return alert
    }

    /// The per-event work on one user's slot: the model input, purchases, churn, the switch detector
    /// and the alert rule. Returns the statistic and whether it raised an alarm.
    private func update(_ slot: inout UserSlot, with event: BehaviorEvent, category: Int32) -> (Double, Bool) {
        let gap = EventSequence.gapBucket(seconds: slot.lastTime.map { Double(max(0, event.timestamp - $0)) })
        slot.recent.append(ModelInput.pack(category: category, action: event.action.rawValue, gap: gap))
        if slot.recent.count >= 2 * settings.modelWindow {
            slot.recent.removeFirst(slot.recent.count - settings.modelWindow)
        }
        slot.lastTime = max(slot.lastTime ?? event.timestamp, event.timestamp)
        if event.action == .purchase {
            slot.purchases.append((event.item, event.timestamp))
            if slot.purchases.count > 32 { slot.purchases.removeFirst() }
        }
        churn.observe(&slot.churn, time: event.timestamp, intent: event.action != .view)
        churn.schedule(&slot.churn, threshold: churnThreshold)
        let score = detector.update(&slot.drift, category: category)
        return (score, settings.rule.observe(score, threshold: threshold, state: &slot.alerting))
    }

    /// The LSTM state after the user's last ``Settings/modelWindow`` events, from a fresh state, into
    /// ``state``: computed when recommendations are needed (an alert, a query), not per event.
    private func materialise(_ slot: UserSlot) {
        scorer.reset(&state)
        for input in slot.recent.suffix(settings.modelWindow) {
            let (category, action, gap) = ModelInput.unpack(input)
            scorer.step(&state, category: Int(category), action: Int(action), gap: Int(gap))
        }
    }

    /// The user's LSTM state as recommendations see it (built from their last ``Settings/modelWindow``
    /// events); nil for an unknown user.
    package func modelState(of user: UInt64) -> [Float]? {
        guard let slot = users[user] else { return nil }
        materialise(slot)
        return state
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
        materialise(slot)
        // p(category | the user's recent history) from the model's state: exp(−surprise).
        let state = self.state
        func probability(_ category: Int32) -> Double {
            exp(-Double(scorer.surprise(of: Int(category), in: state)))
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

/// One model input (category, action, gap bucket) packed in 32 bits: the category in the low 24, the
/// action in the next 3, the gap bucket in the top 5 (``LSTMShape/gapBuckets`` ≤ 32).
enum ModelInput {
    static func pack(category: Int32, action: UInt8, gap: UInt8) -> UInt32 {
        UInt32(truncatingIfNeeded: category) & 0xFF_FFFF | UInt32(action & 0x7) << 24 | UInt32(gap & 0x1F) << 27
    }

    static func unpack(_ value: UInt32) -> (category: Int32, action: UInt8, gap: UInt8) {
        (Int32(value & 0xFF_FFFF), UInt8(value >> 24 & 0x7), UInt8(value >> 27))
    }
}
