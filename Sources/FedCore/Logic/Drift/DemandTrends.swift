import Foundation

/// Category demand as the agents release it each period: for every category, how many distinct shoppers
/// were active in it, and how many shoppers were active at all. A shopper counts in at most
/// `perShopperCategories` categories (their most active ones in the period) and once in the total, so
/// one shopper moves the released vector by at most √(k + 1) in L2 norm — the sensitivity the Gaussian
/// noise of the release is scaled to.
package enum CategoryDemand {
    /// k of the agents' releases.
    package static let categoriesPerShopper = 3

    /// Distinct shoppers per category among `events` (one period), each shopper in at most `k` categories:
    /// their `k` categories with the most events (ties broken by the smaller category id).
    package static func counts(_ events: some Sequence<BehaviorEvent>, perShopperCategories k: Int)
        -> (categories: [UInt64: Double], shoppers: Double)
    {
        var perShopper: [UInt64: [UInt64: Int]] = [:]
        for event in events { perShopper[event.user, default: [:]][event.category, default: 0] += 1 }
        var counts: [UInt64: Double] = [:]
        for (_, categories) in perShopper {
            let top = categories.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(max(1, k))
            for (category, _) in top { counts[category, default: 0] += 1 }
        }
        return (counts, Double(perShopper.count))
    }
}

/// A category whose demand surged or collapsed against its own history, in one region or all of them.
package struct DemandTrendWarning: Sendable, Equatable, Codable {
    package enum Direction: String, Sendable, Codable { case surge, collapse }

    /// The model's category index.
    package var category: UInt64
    /// The platform's category id, when the aggregator has the catalog (`catalog:`) and the index is not
    /// the out-of-vocabulary one.
    package var categoryID: UInt64? = nil
    /// The region, or ``DemandTrendDetector/allRegions`` for the federation's total.
    package var region: String
    package var direction: Direction
    /// The category's share of demand now relative to its expected share, minus one (+2.0 = tripled).
    package var change: Double
    /// Two-sided normal confidence that the share moved: 1 − 2Φ(−|z|).
    package var confidence: Double
    package var zScore: Double
    /// Shoppers in the category this period (noised as released) and the number its history expected.
    package var observed: Double
    package var expected: Double
    package var period: Int

    enum CodingKeys: String, CodingKey {
        case category, region, direction, change, confidence, observed, expected, period
        case zScore = "z_score", categoryID = "category_id"
    }

    /// "category 16838 (model #2)" with the catalog's id, else "model category #2".
    package var categoryName: String {
        categoryID.map { "category \($0) (model #\(category))" } ?? "model category #\(category)"
    }
}

/// Detects categories whose share of demand moves away from its own history, per region and for all
/// regions together, from noised per-period counts (``CategoryDemand``).
///
/// It works on shares — a category's shoppers over the period's active shoppers — so the daily rhythm
/// of the whole shop cancels out. Each series' baseline is the ratio of exponentially weighted sums of
/// its counts and of the periods' shoppers (so a night's few shoppers, whose share is mostly noise,
/// weigh as little as they tell; the first periods weigh equally); a period's share is compared with it
/// in units of the standard deviation it should have: the sampling variance of a share (m(1−m)/N), the
/// release's noise (σ²/N² for the category; the total's, σ²m²/N², too), the excess the series showed
/// in its own history, and the variance of the baseline itself (tracked through the weighted sums). A warning needs |z| above `threshold` once, or above
/// `persistentThreshold` in two consecutive periods in the same direction, **and** a relative change of at least
/// `minimumChange` and an expected or observed count of at least `minimumShoppers` plus two standard
/// deviations of the release noise (so that noise around a handful of shoppers never warns). The
/// baseline is compared at no less than zero: noised counts can teach a category nobody shops a
/// negative mean. One warning per episode: the episode ends after two
/// periods in a row within ±2 deviations of the baseline and nearer it than the level the series has
/// been away at (one night's few shoppers can hide a lasting change, which must not make it warn again
/// the next day); while away, the baseline is frozen for up to
/// `rebaselineAfter` periods, then the new level becomes the baseline.
package struct DemandTrendDetector: Sendable {
    package static let allRegions = "all"

    package struct Settings: Sendable, Equatable, Codable {
        package var threshold = 4.5
        package var persistentThreshold = 3.0
        package var minimumChange = 0.5
        package var minimumShoppers = 10.0
        /// Weight of a new period in the baseline's mean and variance.
        package var smoothing = 0.15
        /// Periods of history before a series may warn.
        package var warmUp = 8
        package var rebaselineAfter = 8
        /// A period with fewer active shoppers than this (a quiet hour, or nothing ingested since the last
        /// release: only noise) is skipped: it neither warns nor teaches the baseline.
        package var minimumPeriodShoppers = 50.0
        package init() {}

        package enum CodingKeys: String, CodingKey, CaseIterable {
            case threshold, smoothing
            case persistentThreshold = "persistent_threshold", minimumChange = "minimum_change"
            case minimumShoppers = "minimum_shoppers", warmUp = "warm_up", rebaselineAfter = "rebaseline_after"
            case minimumPeriodShoppers = "minimum_period_shoppers"
        }
    }

    struct Series: Sendable {
        /// The baseline: exponentially weighted sums of the category's counts and of the periods' active
        /// shoppers, so its share is their ratio and a night's few shoppers weigh as little as they tell.
        /// The first periods are weighted equally (weight 1/n until that falls below `smoothing`).
        var count = 0.0
        var total = 0.0
        /// The variance of `count` as an estimate, in shoppers² (sampling and release noise).
        var countVariance = 0.0
        var learnt = 0
        /// EWMA of squared standardised residuals beyond the model's variance (≥ 0).
        var excess = 0.0
        var periods = 0
        var lastZ = 0.0
        /// Periods the series has been away from its baseline (frozen), its counts, shoppers and
        /// variance meanwhile, and whether this episode warned.
        var away = 0
        var awayCount = 0.0, awayTotal = 0.0, awayVariance = 0.0
        /// Consecutive periods at home: an episode ends after two, so a lasting change seen through one
        /// night's few shoppers does not end it and warn again the next day.
        var home = 0
        var warned = false

        var mean: Double { total > 0 ? count / total : 0 }
        /// The variance of `mean` as an estimate of the share.
        var meanVariance: Double { total > 0 ? countVariance / (total * total) : 0 }

        /// Teaches the baseline one period: `variance` is its count's, in shoppers².
        mutating func learn(count c: Double, total n: Double, variance: Double, smoothing: Double) {
            let a = max(smoothing, 1 / Double(learnt + 1))
            count = (1 - a) * count + a * c
            total = (1 - a) * total + a * n
            countVariance = (1 - a) * (1 - a) * countVariance + a * a * variance
            learnt += 1
        }
    }

    package let settings: Settings
    private var series: [String: [UInt64: Series]] = [:]

    package init(settings: Settings = .init()) { self.settings = settings }

    /// One period of one region's released counts and active shoppers (or the sums of all regions',
    /// with ``allRegions``). `noiseVariance` is the variance of the noise on each released count (0 for
    /// exact counts). Categories absent from `counts` count as 0 if the series exists.
    package mutating func observe(period: Int, region: String, counts: [UInt64: Double], shoppers: Double,
                                  noiseVariance: Double) -> [DemandTrendWarning]
    {
        guard shoppers >= settings.minimumPeriodShoppers else { return [] }
        let total = shoppers
        var known = series[region] ?? [:]
        var warnings: [DemandTrendWarning] = []
        let categories = Set(known.keys).union(counts.keys)
        let alpha = settings.smoothing
        for category in categories {
            let count = counts[category] ?? 0
            let share = count / total
            var state = known[category] ?? Series()
            defer { known[category] = state }
            let m = min(max(state.learnt == 0 ? share : state.mean, 0.5 / total), 1)
            // This period's share as an estimate: sampling and release noise.
            let modelVariance = m * (1 - m) / total + noiseVariance * (1 + m * m) / (total * total)
            let countVariance = modelVariance * total * total
            guard state.periods >= settings.warmUp else {
                state.learn(count: count, total: total, variance: countVariance, smoothing: alpha)
                state.periods += 1
                continue
            }
            // A share is never negative, but a baseline learnt from noised counts of a category nobody
            // shops can be: compared with it, mere noise would look like a surge from below zero.
            let baseline = max(state.mean, 0)
            let z = (share - baseline) / (modelVariance * (1 + state.excess) + state.meanVariance).squareRoot()
            let expected = baseline * total
            let change = baseline > 0 ? share / baseline - 1 : .infinity
            let strong = abs(z) > settings.threshold
                || (abs(z) > settings.persistentThreshold && abs(state.lastZ) > settings.persistentThreshold
                    && (z > 0) == (state.lastZ > 0))
            // The count that matters must stand clear of the release noise too: noise alone passes two of
            // its standard deviations once in 44 draws, and there are thousands of series.
            let floor = settings.minimumShoppers + 2 * noiseVariance.squareRoot()
            let sizeable = abs(change) >= settings.minimumChange && max(expected, count) >= floor
            if strong && sizeable && !state.warned {
                state.warned = true
                warnings.append(DemandTrendWarning(
                    category: category, region: region, direction: z > 0 ? .surge : .collapse,
                    change: change.isFinite ? change : 99, confidence: 1 - 2 * Self.normalTail(abs(z)),
                    zScore: z, observed: count, expected: expected, period: period))
            }
            state.lastZ = z
            state.periods += 1
            // A period within ±2 is at home unless it is nearer the level the series has been away at:
            // a night's few shoppers cannot tell the two apart, and must not end an episode or its count.
            let awayLevel = state.awayTotal > 0 ? state.awayCount / state.awayTotal : nil
            let nearerAway = awayLevel.map { abs(share - $0) < abs(share - baseline) } ?? false
            if abs(z) <= 2 && !nearerAway {
                state.home += 1
                // At home: the baseline learns; after two such periods in a row the episode, if any, is
                // over. The excess is learnt from these periods only: on data more dispersed than the
                // model that under-estimates it (a review measured ~0.5 for a true 3); learning from every
                // period within ±4 instead cost recall here (38 vs 42 of 48 at noise σ = 4) — docs/EVALUATION.md.
                (state.away, state.awayCount, state.awayTotal, state.awayVariance) = (0, 0, 0, 0)
                if state.home >= 2 { state.warned = false }
                state.learn(count: count, total: total, variance: countVariance, smoothing: alpha)
                state.excess += alpha * (max(0, z * z - 1) - state.excess)
            } else {
                // Away: the baseline is frozen, so a lasting change stays visible; once it has lasted
                // `rebaselineAfter` periods it is the new level (the episode stays warned until the series
                // is back within ±2 of it).
                state.away += 1
                state.home = 0
                state.awayCount += count
                state.awayTotal += total
                state.awayVariance += countVariance
                if state.away > settings.rebaselineAfter {
                    let n = Double(state.away)
                    (state.count, state.total, state.countVariance) = (state.awayCount / n, state.awayTotal / n,
                                                                       state.awayVariance / (n * n))
                    (state.away, state.awayCount, state.awayTotal, state.awayVariance) = (0, 0, 0, 0)
                }
            }
        }
        series[region] = known
        return warnings.sorted { abs($0.zScore) > abs($1.zScore) }
    }

    /// P(Z > x) for a standard normal Z.
    static func normalTail(_ x: Double) -> Double { 0.5 * erfc(x / 2.0.squareRoot()) }
}
