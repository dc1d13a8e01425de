import Foundation

/// Per-user interest-switch detection by truncated Bayesian online changepoint detection (Adams &
/// MacKay 2007) over the categories a shopper moves to (design: `shared/design/DRIFT-DETECTOR.md`).
///
/// What carries the signal on real shoppers: a shopper whose interests switched almost never returns
/// to the old categories, while an ordinary shopper usually returns within a few events. So:
/// - **Only category changes are evidence.** An event in the same category as the previous one has
///   likelihood 1 under every hypothesis and leaves the changepoint posterior as it is.
/// - **A user model** M(x | h) predicts the next category from a history h: a decayed category profile
///   with a Pitman–Yor-style novelty rate ν = min(ν_max, (a + d·K)/(n + a)) for categories not yet seen
///   (spread by the population prior g), mixed with short-term recency ST (the last few categories,
///   geometrically weighted): M = σ·ST + (1 − σ)·Q. A change to x then has likelihood
///   M(x | h) / (1 − M(prev | h)).
/// - **Hypotheses:** the current segment began r = 1…K change events ago (its model is built from
///   those r categories only), or long ago ("long": the user's whole profile). A new segment's first
///   category is predicted by g alone. Hazard H per change event.
/// - **Score** S = log P(run ≤ K) − log P(long): positive when a recent changepoint explains the
///   latest categories better than the user's history does; 0 during the first `warmUp` events.
/// - **Explorers:** each completed excursion of S above `excursionLevel` raises the user's offset by
///   `excursionPenalty`; the reported statistic is S − offset, so a habitual explorer needs more
///   evidence than a loyal shopper.
///
/// Per user: ≤ `profileCapacity` decayed category weights, a ring of the last K change categories,
/// K + 1 log-probabilities and a few scalars. Work per change event: O(K²) for the K segment models
/// (K = 20: a few hundred multiply-adds), nothing for a repeat beyond the profile update.
package struct SwitchDetector: Sendable {
    /// Every setting is a configuration key of the agent (`drift.detector.*`); the defaults are the
    /// design note's, fitted on Taobao shoppers (see docs/EVALUATION.md for how they were chosen).
    package struct Settings: Sendable, Equatable, Codable {
        /// Run lengths tracked explicitly (K); older changepoints fall into "long".
        package var runLengths = 20
        /// Prior probability that a change event starts a new segment.
        package var hazard = 1.0 / 200
        /// Per-event decay of the long-run category profile (λ).
        package var profileDecay = 0.99
        /// Per-change decay of a segment's profile.
        package var segmentDecay = 0.99
        /// Pitman–Yor novelty: ν = min(noveltyCap, (a + d·K)/(n + a)).
        package var noveltyConcentration = 24.0
        package var noveltyDiscount = 0.7
        package var noveltyCap = 0.95
        /// Weight σ of short-term recency in M, its per-step decay λs and its length.
        package var recencyWeight = 0.4
        package var recencyDecay = 0.6
        package var recencyLength = 12
        /// Events before the score may be nonzero.
        package var warmUp = 10
        /// A score above this level that falls back below it is one completed excursion.
        package var excursionLevel = 1.0
        /// Offset added per completed excursion.
        package var excursionPenalty = 1.0
        /// Most categories kept in the long-run profile (the lightest is evicted).
        package var profileCapacity = 64

        package init() {}

        package enum CodingKeys: String, CodingKey, CaseIterable {
            case runLengths = "run_lengths", hazard, profileDecay = "profile_decay", segmentDecay = "segment_decay"
            case noveltyConcentration = "novelty_concentration", noveltyDiscount = "novelty_discount"
            case noveltyCap = "novelty_cap", recencyWeight = "recency_weight", recencyDecay = "recency_decay"
            case recencyLength = "recency_length", warmUp = "warm_up", excursionLevel = "excursion_level"
            case excursionPenalty = "excursion_penalty", profileCapacity = "profile_capacity"
        }

        /// Reads the keys present; the others keep their defaults. Values out of range are refused
        /// with the key named.
        package init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.init()
            func read<T: Decodable>(_ key: CodingKeys, into value: inout T) throws {
                if let decoded = try container.decodeIfPresent(T.self, forKey: key) { value = decoded }
            }
            try read(.runLengths, into: &runLengths)
            try read(.hazard, into: &hazard)
            try read(.profileDecay, into: &profileDecay)
            try read(.segmentDecay, into: &segmentDecay)
            try read(.noveltyConcentration, into: &noveltyConcentration)
            try read(.noveltyDiscount, into: &noveltyDiscount)
            try read(.noveltyCap, into: &noveltyCap)
            try read(.recencyWeight, into: &recencyWeight)
            try read(.recencyDecay, into: &recencyDecay)
            try read(.recencyLength, into: &recencyLength)
            try read(.warmUp, into: &warmUp)
            try read(.excursionLevel, into: &excursionLevel)
            try read(.excursionPenalty, into: &excursionPenalty)
            try read(.profileCapacity, into: &profileCapacity)
            if let problem = validationProblem {
                throw DecodingError.dataCorrupted(.init(codingPath: container.codingPath + [problem.key],
                                                        debugDescription: problem.reason))
            }
        }

        /// The first setting out of range, if any.
        package var validationProblem: (key: CodingKeys, reason: String)? {
            if !(1...256).contains(runLengths) { return (.runLengths, "\(runLengths) is not in 1...256") }
            if !(hazard > 0 && hazard < 1) { return (.hazard, "\(hazard) is not in (0, 1)") }
            for (key, value) in [(CodingKeys.profileDecay, profileDecay), (.segmentDecay, segmentDecay),
                                 (.recencyDecay, recencyDecay)] where !(value > 0 && value <= 1) {
                return (key, "\(value) is not in (0, 1]")
            }
            for (key, value) in [(CodingKeys.noveltyCap, noveltyCap), (.recencyWeight, recencyWeight),
                                 (.noveltyDiscount, noveltyDiscount)] where !(value >= 0 && value < 1) {
                return (key, "\(value) is not in [0, 1)")
            }
            if !(noveltyConcentration > 0 && noveltyConcentration.isFinite) {
                return (.noveltyConcentration, "\(noveltyConcentration) must be positive")
            }
            if !(1...1_000).contains(recencyLength) { return (.recencyLength, "\(recencyLength) is not in 1...1000") }
            if warmUp < 0 { return (.warmUp, "\(warmUp) is negative") }
            if !excursionLevel.isFinite || !(excursionPenalty >= 0 && excursionPenalty.isFinite) {
                return (.excursionPenalty, "excursion level and penalty must be finite, the penalty ≥ 0")
            }
            if !(1...4_096).contains(profileCapacity) { return (.profileCapacity, "\(profileCapacity) is not in 1...4096") }
            return nil
        }
    }

    /// One user's state.
    package struct UserState: Sendable {
        package fileprivate(set) var events = 0
        /// The statistic the threshold is compared with: S − offset.
        package fileprivate(set) var score = 0.0
        /// S itself, and the user's explorer offset.
        package fileprivate(set) var rawScore = 0.0
        package fileprivate(set) var offset = 0.0
        fileprivate var previous: Int32?
        fileprivate var inExcursion = false
        /// Long-run profile: category → weight / scale (lazy decay).
        fileprivate var profileCategories: [Int32] = []
        fileprivate var profileWeights: [Double] = []
        fileprivate var profileScale = 1.0
        /// Distinct categories seen (counts a category again after it was evicted) and events seen.
        fileprivate var distinct = 0
        /// The last K change categories, oldest first (the newest is the user's current category).
        fileprivate var changes: [Int32] = []
        /// log P(run = r) for r = 1…K (index r − 1), and log P(long).
        fileprivate var logRun: [Double] = []
        fileprivate var logLong = 0.0

        package init() {}

        /// log P(run = r) for r = 1…K and log P(long), for diagnostics and tests.
        package var logPosterior: (runs: [Double], long: Double) { (logRun, logLong) }

        /// Forgets the changepoint posterior (after an alert: the switch has been reported; the
        /// profile and offset stay).
        package mutating func resetPosterior() {
            logRun = []
            logLong = 0
            score = 0
            rawScore = 0
        }
    }

    package let settings: Settings
    /// The population prior g(x): the share of users who touched x, smoothed; indexed by model category.
    package let prior: [Double]

    /// - Parameters:
    ///   - prior: g over the model's categories (all positive). It must come from a DP release or the
    ///     DP-trained global model, never from another region's raw behaviour.
    package init(settings: Settings = Settings(), prior: [Double]) {
        precondition(!prior.isEmpty && prior.allSatisfy { $0 > 0 && $0.isFinite }, "the prior must be positive")
        precondition(settings.runLengths >= 1, "at least one run length")
        self.settings = settings
        self.prior = prior
    }

    /// The smoothed share of users who touched each category: (users touching c + ½) / (users + ½·C).
    package static func prior(usersTouching counts: [Double], users: Double) -> [Double] {
        let categories = Double(counts.count)
        return counts.map { (max(0, $0) + 0.5) / (max(0, users) + 0.5 * categories) }
    }

    private func g(_ category: Int32) -> Double {
        let index = Int(category)
        return index >= 0 && index < prior.count ? prior[index] : prior.min() ?? 1e-6
    }

    /// Takes the user's next event (its model category); returns the updated statistic S − offset.
    @discardableResult
    package func update(_ state: inout UserState, category: Int32) -> Double {
        state.events += 1
        defer { addToProfile(&state, category) }
        guard let previous = state.previous else {
            state.previous = category
            state.changes = [category]
            return 0
        }
        guard category != previous else { return state.score }
        state.previous = category
        updatePosterior(&state, category: category, previous: previous)
        state.changes.append(category)
        if state.changes.count > settings.runLengths { state.changes.removeFirst(state.changes.count - settings.runLengths) }
        let raw = state.events <= settings.warmUp ? 0 : state.logRun.reduce(-Double.infinity, logAdd) - state.logLong
        state.rawScore = raw
        if raw > settings.excursionLevel {
            state.inExcursion = true
        } else if state.inExcursion {
            state.inExcursion = false
            state.offset += settings.excursionPenalty
        }
        state.score = raw - state.offset
        return state.score
    }

    /// The Bayesian update of the run-length posterior for a change to `category` from `previous`.
    private func updatePosterior(_ state: inout UserState, category: Int32, previous: Int32) {
        let logHazard = log(settings.hazard), logStay = log1p(-settings.hazard)
        let K = settings.runLengths
        let newSegment = log(g(category)) - log(max(1e-12, 1 - g(previous)))
        let full = log(changeLikelihood(of: category, from: previous, segment: nil, state: state))
        let all = state.logRun.reduce(state.logLong, logAdd)
        var next = [Double](repeating: -.infinity, count: K)
        next[0] = all + logHazard + newSegment
        for r in 1..<max(1, K) where r <= state.logRun.count {
            let old = state.logRun[r - 1]
            guard old > -.infinity else { continue }
            next[r] = old + logStay + log(changeLikelihood(of: category, from: previous, segment: r, state: state))
        }
        var long = state.logLong + logStay + full
        if state.logRun.count == K, state.logRun[K - 1] > -.infinity {
            let overflow = state.logRun[K - 1] + logStay
                + log(changeLikelihood(of: category, from: previous, segment: K, state: state))
            long = logAdd(long, overflow)
        }
        let total = next.reduce(long, logAdd)
        state.logRun = next.map { $0 - total }
        state.logLong = long - total
    }

    /// M(x | h) / (1 − M(prev | h)) for the user's whole history (`segment` nil) or for the segment of
    /// their last `segment` change categories.
    private func changeLikelihood(of category: Int32, from previous: Int32, segment: Int?, state: UserState) -> Double {
        let (x, p) = segment.map { self.segment($0, category, previous, state.changes) }
            ?? full(category, previous, state)
        return max(1e-12, x) / max(1e-12, 1 - p)
    }

    /// M(x) and M(prev) from the whole history: the long-run profile, the novelty rate, recency.
    private func full(_ category: Int32, _ previous: Int32, _ state: UserState) -> (Double, Double) {
        guard !state.profileCategories.isEmpty else { return (g(category), g(previous)) }
        var total = 0.0, wx = 0.0, wp = 0.0
        for (index, c) in state.profileCategories.enumerated() {
            let weight = state.profileWeights[index]
            total += weight
            if c == category { wx = weight }
            if c == previous { wp = weight }
        }
        let nu = novelty(distinct: state.distinct, events: state.events - 1)
        let (stx, stp) = recency(category, previous, state.changes)
        func q(_ w: Double, _ c: Int32) -> Double { w > 0 ? (1 - nu) * w / total : nu * g(c) }
        let σ = settings.recencyWeight
        return (σ * stx + (1 - σ) * q(wx, category), σ * stp + (1 - σ) * q(wp, previous))
    }

    /// M(x) and M(prev) from the last `length` change categories only.
    private func segment(_ length: Int, _ category: Int32, _ previous: Int32, _ changes: [Int32]) -> (Double, Double) {
        let events = changes.suffix(length)
        var total = 0.0, wx = 0.0, wp = 0.0, weight = 1.0
        var seen: [Int32] = []
        seen.reserveCapacity(events.count)
        for c in events.reversed() {
            total += weight
            if c == category { wx += weight }
            if c == previous { wp += weight }
            if !seen.contains(c) { seen.append(c) }
            weight *= settings.segmentDecay
        }
        let nu = novelty(distinct: seen.count, events: events.count)
        let (stx, stp) = recency(category, previous, Array(events))
        func q(_ w: Double, _ c: Int32) -> Double { w > 0 ? (1 - nu) * w / total : nu * g(c) }
        let σ = settings.recencyWeight
        return (σ * stx + (1 - σ) * q(wx, category), σ * stp + (1 - σ) * q(wp, previous))
    }

    private func novelty(distinct: Int, events: Int) -> Double {
        let a = settings.noveltyConcentration
        return min(settings.noveltyCap, (a + settings.noveltyDiscount * Double(distinct)) / (Double(max(0, events)) + a))
    }

    /// ST(x) and ST(prev): geometrically weighted shares of the last `recencyLength` categories.
    private func recency(_ category: Int32, _ previous: Int32, _ history: [Int32]) -> (Double, Double) {
        var total = 0.0, x = 0.0, p = 0.0, weight = 1.0
        for c in history.suffix(settings.recencyLength).reversed() {
            total += weight
            if c == category { x += weight }
            if c == previous { p += weight }
            weight *= settings.recencyDecay
        }
        return total > 0 ? (x / total, p / total) : (0, 0)
    }

    private func addToProfile(_ state: inout UserState, _ category: Int32) {
        state.profileScale /= settings.profileDecay
        if state.profileScale > 1e200 {
            for index in state.profileWeights.indices { state.profileWeights[index] /= state.profileScale }
            state.profileScale = 1
        }
        if let index = state.profileCategories.firstIndex(of: category) {
            state.profileWeights[index] += state.profileScale
            return
        }
        state.distinct += 1
        if state.profileCategories.count >= settings.profileCapacity,
           let lightest = state.profileWeights.indices.min(by: { state.profileWeights[$0] < state.profileWeights[$1] }) {
            state.profileCategories.remove(at: lightest)
            state.profileWeights.remove(at: lightest)
        }
        state.profileCategories.append(category)
        state.profileWeights.append(state.profileScale)
    }
}

/// log(eᵃ + eᵇ), exact at −∞.
private func logAdd(_ a: Double, _ b: Double) -> Double {
    if a == -.infinity { return b }
    if b == -.infinity { return a }
    let high = max(a, b)
    return high + log1p(exp(min(a, b) - high))
}
