import FedModel
import Foundation

/// Per-user interest-drift detection, one event at a time in O(1) amortised work (profiles are capped
/// at ``Settings/profileCapacity`` categories).
///
/// Two signals, combined into one score:
/// - **Surprise.** The event's surprise under the global model (−log p of its category given the user's
///   history, from ``StreamingScorer``), standardised by the user's own running mean and variance
///   (exponentially weighted), feeds a one-sided CUSUM (Page 1954): S ← max(0, S + z − k). A stable
///   user's surprises hover around their mean, so S stays near 0; after a shift the model keeps being
///   wrong about this user and S climbs within a few events.
/// - **Profile divergence.** Short- and long-horizon interest profiles — exponentially decayed category
///   counts weighted by action (view 1, cart 2, favourite 2, purchase 3) — and the Jensen–Shannon
///   divergence between them (0 … ln 2): near 0 while the recent interests look like the long-run ones.
///
/// score = S + `divergenceWeight` · JS. An alert fires when the score crosses the threshold (from the
/// aggregator, else the cold-start value), after `warmUp` events, and at most once per shift: the user
/// then cools down for `coolDown` events and re-arms only once the score fell below half the threshold.
/// Each alert carries its direction: **emerging** categories (short-horizon share above long-horizon
/// share) and **fading** ones (the reverse, a churn-risk signal), with the share differences as weights.
package struct DriftDetector: Sendable {
    package struct Settings: Sendable, Equatable {
        /// CUSUM allowance k, in standard deviations of the user's surprise. The defaults (k = 3, weight
        /// 30, short decay 0.9) were chosen with `edge-agent evaluate-drift --seed 7` on the simulator and
        /// are reported on other seeds and on real switches (docs/EVALUATION.md).
        package var allowance = 3.0
        /// Decay per event of the short- and long-horizon profiles (half-lives ≈ 6.6 and ≈ 35 events).
        package var shortDecay = 0.9
        package var longDecay = 0.98
        /// Decay per event of the surprise mean and variance (≈ 50-event memory).
        package var baselineDecay = 0.98
        package var divergenceWeight = 30.0
        package var warmUp = 10
        package var coolDown = 30
        package var profileCapacity = 48
        package var directionCategories = 3
        package init() {}
    }

    /// One alert's content as the detector sees it.
    package struct Detection: Sendable, Equatable {
        package var score: Double
        package var threshold: Double
        package var emerging: [(category: Int32, weight: Double)]
        package var fading: [(category: Int32, weight: Double)]

        package static func == (lhs: Detection, rhs: Detection) -> Bool {
            lhs.score == rhs.score && lhs.threshold == rhs.threshold
                && lhs.emerging.map(\.category) == rhs.emerging.map(\.category)
                && lhs.fading.map(\.category) == rhs.fading.map(\.category)
        }
    }

    /// A user's detector state (besides the LSTM state, which the scorer keeps).
    package struct UserState: Sendable {
        package var events = 0
        package var surpriseMean = 0.0
        package var surpriseVariance = 1.0
        package var cusum = 0.0
        package var score = 0.0
        package var coolDownLeft = 0
        package var armed = true
        var shortProfile = DecayedProfile()
        var longProfile = DecayedProfile()
        package init() {}

        /// The `count` categories gaining (emerging) and losing (fading) the most share of the user's
        /// recent interest against their longer-term profile.
        package func direction(count: Int)
            -> (emerging: [(category: Int32, weight: Double)], fading: [(category: Int32, weight: Double)])
        {
            DecayedProfile.direction(short: shortProfile, long: longProfile, count: count)
        }
    }

    package var settings: Settings
    package init(settings: Settings = Settings()) { self.settings = settings }

    /// Action weights for the interest profiles.
    static func weight(of action: UInt8) -> Double {
        switch action {
        case 0: 1
        case 3: 3
        default: 2
        }
    }

    /// Consumes one event of a user: its model category, action, and surprise under the model before
    /// the event. Returns a detection when the user's score crosses `threshold` (armed, warmed up).
    package func update(_ state: inout UserState, category: Int32, action: UInt8, surprise: Double,
                        threshold: Double) -> Detection? {
        let s = settings
        state.events += 1
        // Standardised surprise against the user's own baseline (before this event updates it).
        let deviation = (surprise - state.surpriseMean) / max(state.surpriseVariance.squareRoot(), 0.25)
        if state.events == 1 {
            state.surpriseMean = surprise
        } else {
            let difference = surprise - state.surpriseMean
            state.surpriseMean += (1 - s.baselineDecay) * difference
            state.surpriseVariance = s.baselineDecay * (state.surpriseVariance + (1 - s.baselineDecay) * difference * difference)
        }
        if state.events > 2 { state.cusum = max(0, state.cusum + deviation - s.allowance) }
        let weight = Self.weight(of: action)
        state.shortProfile.add(category, weight: weight, decay: s.shortDecay, capacity: s.profileCapacity)
        state.longProfile.add(category, weight: weight, decay: s.longDecay, capacity: s.profileCapacity)
        let divergence = DecayedProfile.jensenShannon(state.shortProfile, state.longProfile)
        state.score = state.cusum + s.divergenceWeight * divergence

        if state.coolDownLeft > 0 { state.coolDownLeft -= 1 }
        if !state.armed && state.coolDownLeft == 0 && state.score < threshold / 2 { state.armed = true }
        guard state.armed, state.events > s.warmUp, state.score >= threshold else { return nil }
        state.armed = false
        state.coolDownLeft = s.coolDown
        let (emerging, fading) = DecayedProfile.direction(short: state.shortProfile, long: state.longProfile,
                                                           count: s.directionCategories)
        let detection = Detection(score: state.score, threshold: threshold, emerging: emerging, fading: fading)
        state.cusum = 0
        return detection
    }
}

/// Exponentially decayed category weights, capped at a few entries (the smallest is evicted). Decay is
/// applied lazily through a running scale, so an update touches one entry (plus a rare renormalisation).
struct DecayedProfile: Sendable {
    private(set) var categories: [Int32] = []
    private(set) var values: [Double] = []
    /// True weight = value × scale.
    private var scale = 1.0

    var total: Double { values.reduce(0, +) * scale }

    func weight(at index: Int) -> Double { values[index] * scale }

    mutating func add(_ category: Int32, weight: Double, decay: Double, capacity: Int) {
        scale *= decay
        if scale < 1e-200 {
            for index in values.indices { values[index] *= scale }
            scale = 1
        }
        if let index = categories.firstIndex(of: category) {
            values[index] += weight / scale
            return
        }
        if categories.count >= capacity, let smallest = values.indices.min(by: { values[$0] < values[$1] }) {
            categories.remove(at: smallest)
            values.remove(at: smallest)
        }
        categories.append(category)
        values.append(weight / scale)
    }

    /// Jensen–Shannon divergence (nats) between the two normalised profiles.
    static func jensenShannon(_ a: DecayedProfile, _ b: DecayedProfile) -> Double {
        let totalA = a.total, totalB = b.total
        guard totalA > 0, totalB > 0 else { return 0 }
        var divergence = 0.0
        func term(_ p: Double, _ m: Double) -> Double { p > 0 ? p * log(p / m) : 0 }
        var seen = Set<Int32>()
        for (index, category) in a.categories.enumerated() {
            let p = a.weight(at: index) / totalA
            let q = b.categories.firstIndex(of: category).map { b.weight(at: $0) / totalB } ?? 0
            let m = (p + q) / 2
            divergence += 0.5 * (term(p, m) + term(q, m))
            seen.insert(category)
        }
        for (index, category) in b.categories.enumerated() where !seen.contains(category) {
            let q = b.weight(at: index) / totalB
            divergence += 0.5 * term(q, q / 2)
        }
        return max(0, divergence)
    }

    /// Categories whose short-horizon share exceeds (emerging) or falls short of (fading) their
    /// long-horizon share, largest differences first.
    static func direction(short: DecayedProfile, long: DecayedProfile, count: Int)
        -> (emerging: [(category: Int32, weight: Double)], fading: [(category: Int32, weight: Double)])
    {
        let totalShort = max(short.total, .leastNonzeroMagnitude), totalLong = max(long.total, .leastNonzeroMagnitude)
        var difference: [Int32: Double] = [:]
        for (index, category) in short.categories.enumerated() { difference[category, default: 0] += short.weight(at: index) / totalShort }
        for (index, category) in long.categories.enumerated() { difference[category, default: 0] -= long.weight(at: index) / totalLong }
        let emerging = difference.filter { $0.value > 0 }.sorted { $0.value > $1.value }.prefix(count)
            .map { (category: $0.key, weight: $0.value) }
        let fading = difference.filter { $0.value < 0 }.sorted { $0.value < $1.value }.prefix(count)
            .map { (category: $0.key, weight: -$0.value) }
        return (emerging, fading)
    }
}
