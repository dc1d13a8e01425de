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
///   latest categories better than the user's history does; −∞ (no evidence) during the first `warmUp`
///   events and until the first category change.
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
            try decoder.rejectUnknownKeys(CodingKeys.self)
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
        /// The statistic the threshold is compared with: S − offset; −∞ while there is no evidence yet
        /// (warm-up, no category change), so that no threshold, however low, alarms on silence.
        package fileprivate(set) var score = -Double.infinity
        /// S itself, and the user's explorer offset.
        package fileprivate(set) var rawScore = -Double.infinity
        package fileprivate(set) var offset = 0.0
        fileprivate var previous: Int32?
        fileprivate var inExcursion = false
        /// Long-run profile: category → weight / scale (lazy decay).
        fileprivate var profileCategories: [Int32] = []
        fileprivate var profileWeights: [Double] = []
        fileprivate var profileScale = 1.0
        /// Distinct categories seen (counts a category again after it was evicted) and events seen.
        fileprivate var distinct = 0
        /// The last K change categories, oldest first (the newest is the user's current category), and
        /// the user's event number at each.
        fileprivate var changes: [Int32] = []
        fileprivate var changeEvents: [Int] = []
        /// log P(run = r) for r = 1…K (index r − 1), and log P(long).
        fileprivate var logRun: [Double] = []
        fileprivate var logLong = 0.0
        /// Scratch: each segment's likelihood of the current change (kept to avoid an allocation per event).
        fileprivate var likelihoods: [Double] = []

        package init() {}

        /// log P(run = r) for r = 1…K and log P(long), for diagnostics and tests.
        package var logPosterior: (runs: [Double], long: Double) { (logRun, logLong) }
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
            state.changeEvents = [state.events]
            return state.score
        }
        guard category != previous else { return state.score }
        state.previous = category
        updatePosterior(&state, category: category, previous: previous)
        state.changes.append(category)
        state.changeEvents.append(state.events)
        if state.changes.count > settings.runLengths {
            state.changes.removeFirst(state.changes.count - settings.runLengths)
            state.changeEvents.removeFirst(state.changeEvents.count - settings.runLengths)
        }
        let raw = state.events <= settings.warmUp ? -.infinity
            : state.logRun.reduce(-Double.infinity, logAdd) - state.logLong
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

    /// Events since the most probable recent changepoint (the first event of the most probable run of
    /// length ≤ K), nil when "long ago" is the most probable.
    package func eventsSinceChange(_ state: UserState) -> Int? {
        var best = state.logLong, run: Int?
        for (index, value) in state.logRun.enumerated() where value > best && index < state.changes.count {
            (best, run) = (value, index + 1)
        }
        guard let run else { return nil }
        return state.events - state.changeEvents[state.changeEvents.count - run] + 1
    }

    /// The categories with the largest shares of the user's long-run (decayed) profile.
    package func topCategories(_ state: UserState, count: Int) -> [(category: Int32, share: Double)] {
        let total = state.profileWeights.reduce(0, +)
        guard total > 0 else { return [] }
        return zip(state.profileCategories, state.profileWeights).map { ($0, $1 / total) }
            .sorted { ($0.1, $1.0) > ($1.1, $0.0) }.prefix(count).map { (category: $0.0, share: $0.1) }
    }

    /// What changed, for an alert: the categories whose share of the user's recent change events (the
    /// last K, most recent weighted most) most exceeds (emerging) or falls short of (fading) their share
    /// of the long-run profile, with the share before (long run) and after (recent).
    package func direction(_ state: UserState, count: Int)
        -> (emerging: [(category: Int32, before: Double, after: Double)],
            fading: [(category: Int32, before: Double, after: Double)])
    {
        var recent: [Int32: Double] = [:], recentTotal = 0.0, weight = 1.0
        for category in state.changes.reversed() {
            recent[category, default: 0] += weight
            recentTotal += weight
            weight *= settings.segmentDecay
        }
        let longTotal = state.profileWeights.reduce(0, +)
        var long: [Int32: Double] = [:]
        for (index, category) in state.profileCategories.enumerated() where longTotal > 0 {
            long[category] = state.profileWeights[index] / longTotal
        }
        var shares: [(category: Int32, before: Double, after: Double)] = []
        for category in Set(recent.keys).union(long.keys) {
            shares.append((category, long[category] ?? 0, recentTotal > 0 ? (recent[category] ?? 0) / recentTotal : 0))
        }
        let emerging = shares.filter { $0.after > $0.before }
            .sorted { ($0.after - $0.before, $1.category) > ($1.after - $1.before, $0.category) }.prefix(count)
        let fading = shares.filter { $0.after < $0.before }
            .sorted { ($0.before - $0.after, $1.category) > ($1.before - $1.after, $0.category) }.prefix(count)
        return (Array(emerging), Array(fading))
    }

    /// The Bayesian update of the run-length posterior for a change to `category` from `previous`, in
    /// place: one backward pass over the change ring gives every segment's likelihood (no allocation
    /// once the user's arrays have their size).
    private func updatePosterior(_ state: inout UserState, category: Int32, previous: Int32) {
        let logHazard = log(settings.hazard), logStay = log1p(-settings.hazard)
        let K = settings.runLengths
        if state.logRun.count < K {
            state.logRun.append(contentsOf: repeatElement(-.infinity, count: K - state.logRun.count))
            state.likelihoods = [Double](repeating: 0, count: K)
        }
        segmentLikelihoods(&state, category: category, previous: previous)
        let newSegment = log(g(category)) - log(max(1e-12, 1 - g(previous)))
        let (mx, mp) = full(category, previous, state)
        let full = log(max(1e-12, mx) / max(1e-12, 1 - mp))
        var all = state.logLong
        for value in state.logRun { all = logAdd(all, value) }
        // Run K leaves the window into "long"; runs r = K−1 … 1 grow by one; a new segment starts.
        var long = state.logLong + logStay + full
        if state.logRun[K - 1] > -.infinity {
            long = logAdd(long, state.logRun[K - 1] + logStay + log(state.likelihoods[K - 1]))
        }
        var r = K - 1
        while r >= 1 {
            let old = state.logRun[r - 1]
            state.logRun[r] = old > -.infinity ? old + logStay + log(state.likelihoods[r - 1]) : -.infinity
            r -= 1
        }
        state.logRun[0] = all + logHazard + newSegment
        var total = long
        for value in state.logRun { total = logAdd(total, value) }
        for index in state.logRun.indices { state.logRun[index] -= total }
        state.logLong = long - total
    }

    /// `state.likelihoods[r − 1]` = M_r(x) / (1 − M_r(prev)) for the segments of the last r = 1 … K
    /// change categories (decayed profile, novelty rate, recency), walking the ring from the newest.
    private func segmentLikelihoods(_ state: inout UserState, category: Int32, previous: Int32) {
        let K = settings.runLengths, σ = settings.recencyWeight
        var total = 0.0, wx = 0.0, wp = 0.0, weight = 1.0, distinct = 0
        var recencyTotal = 0.0, recencyX = 0.0, recencyP = 0.0, recencyWeight = 1.0
        let changes = state.changes
        var r = 0
        while r < K {
            if r < changes.count {
                let c = changes[changes.count - 1 - r]
                total += weight
                if c == category { wx += weight }
                if c == previous { wp += weight }
                weight *= settings.segmentDecay
                var seenLater = false
                var j = changes.count - r
                while j < changes.count {
                    if changes[j] == c { seenLater = true; break }
                    j += 1
                }
                if !seenLater { distinct += 1 }
                if r < settings.recencyLength {
                    recencyTotal += recencyWeight
                    if c == category { recencyX += recencyWeight }
                    if c == previous { recencyP += recencyWeight }
                    recencyWeight *= settings.recencyDecay
                }
            }
            let length = min(r + 1, changes.count)
            let nu = novelty(distinct: distinct, events: length)
            let stx = recencyTotal > 0 ? recencyX / recencyTotal : 0, stp = recencyTotal > 0 ? recencyP / recencyTotal : 0
            let qx = wx > 0 ? (1 - nu) * wx / total : nu * g(category)
            let qp = wp > 0 ? (1 - nu) * wp / total : nu * g(previous)
            let mx = σ * stx + (1 - σ) * qx, mp = σ * stp + (1 - σ) * qp
            state.likelihoods[r] = max(1e-12, mx) / max(1e-12, 1 - mp)
            r += 1
        }
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
        var recencyTotal = 0.0, stx = 0.0, stp = 0.0, recencyWeight = 1.0
        var j = state.changes.count - 1
        while j >= 0 && state.changes.count - j <= settings.recencyLength {
            let c = state.changes[j]
            recencyTotal += recencyWeight
            if c == category { stx += recencyWeight }
            if c == previous { stp += recencyWeight }
            recencyWeight *= settings.recencyDecay
            j -= 1
        }
        if recencyTotal > 0 {
            stx /= recencyTotal
            stp /= recencyTotal
        }
        func q(_ w: Double, _ c: Int32) -> Double { w > 0 ? (1 - nu) * w / total : nu * g(c) }
        let σ = settings.recencyWeight
        return (σ * stx + (1 - σ) * q(wx, category), σ * stp + (1 - σ) * q(wp, previous))
    }

    private func novelty(distinct: Int, events: Int) -> Double {
        let a = settings.noveltyConcentration
        return min(settings.noveltyCap, (a + settings.noveltyDiscount * Double(distinct)) / (Double(max(0, events)) + a))
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
