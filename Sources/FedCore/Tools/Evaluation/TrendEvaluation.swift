package import FedLogic
import FedModel
import Foundation

/// Demand-trend warnings against ground truth: regions of simulated shoppers with injected category
/// surges and collapses (some in every region, some in one), released per period as the agents would —
/// distinct shoppers per category, each shopper in at most k categories, plus the active shoppers, each
/// count with Gaussian noise of standard deviation z, as an agent's `trends.noise_multiplier` z releases
/// them (L2 sensitivity √(k + 1), so charged at z/√(k + 1)) — and the ``DemandTrendDetector`` run on
/// every region and on their sum. A trend is caught when a warning of its category and direction (in its
/// region, or in the total) comes within `window` periods of its start; any other warning is false.
package enum TrendEvaluation {
    package struct Settings: Sendable {
        package var regions = 3
        package var usersPerRegion = 2_000
        package var days = 9
        package var periodHours = 6.0
        package var surges = 8
        package var collapses = 8
        package var surgeFactor = 3.0
        package var collapseFactor = 0.25
        /// Trends among the categories of these popularity ranks (busy enough to measure).
        package var ranks = 0..<50
        /// Trends start uniformly in this part of the simulated period.
        package var startWindow = 0.45..<0.8
        package var perShopperCategories = 3
        /// Poisson sampling of the shoppers of each period, as the agents' release does (1: all).
        package var samplingRate = 1.0
        package var noiseMultipliers: [Double] = [0, 2, 4, 8]
        package var detector = DemandTrendDetector.Settings()
        /// Periods after a trend's start within which a warning catches it.
        package var window = 8
        package var seed: UInt64 = 1
        /// Print each false warning with the trend of its category, if any (to study them).
        package var listFalseWarnings = false
        package init() {}
    }

    package struct Trend: Sendable, Codable, Equatable {
        package var category: UInt64
        /// nil: every region.
        package var region: String?
        package var direction: DemandTrendWarning.Direction
        package var factor: Double
        package var start: Int64
    }

    package struct Outcome: Sendable, Codable {
        package var noiseMultiplier: Double
        package var trends: Int
        package var caught: Int
        package var caughtSurges: Int
        package var caughtCollapses: Int
        package var medianDelayHours: Double?
        package var warnings: Int
        package var falseWarnings: Int
        /// False warnings per simulated day, over all regions and the total together.
        package var falseWarningsPerDay: Double
        package var precision: Double
        package var recall: Double

        enum CodingKeys: String, CodingKey {
            case trends, caught, warnings, precision, recall
            case noiseMultiplier = "noise_multiplier", caughtSurges = "caught_surges", caughtCollapses = "caught_collapses"
            case medianDelayHours = "median_delay_hours", falseWarnings = "false_warnings"
            case falseWarningsPerDay = "false_warnings_per_day"
        }
    }

    /// The injected trends, drawn from `settings.seed`: distinct categories, half in every region.
    package static func trends(_ settings: Settings) -> [Trend] {
        var random = SplitMix64(seed: settings.seed &* 0x5851_F42D_4C95_7F2D &+ 7)
        var ranks = Array(settings.ranks)
        for index in ranks.indices.reversed() where index > 0 {
            ranks.swapAt(index, Int(random.next() % UInt64(index + 1)))
        }
        let start = ShopperSimulator.Parameters().start
        let period = Double(settings.days) * 86_400
        var trends: [Trend] = []
        for (index, rank) in ranks.prefix(settings.surges + settings.collapses).enumerated() {
            let surge = index < settings.surges
            let everywhere = index % 2 == 0
            let region = everywhere ? nil : "region-\(1 + Int(random.next() % UInt64(settings.regions)))"
            let at = settings.startWindow.lowerBound + random.nextUnit() * (settings.startWindow.upperBound - settings.startWindow.lowerBound)
            trends.append(Trend(category: ShopperSimulator.categoryID(rank: rank), region: region,
                                direction: surge ? .surge : .collapse,
                                factor: surge ? settings.surgeFactor : settings.collapseFactor,
                                start: start + Int64(at * period)))
        }
        return trends
    }

    /// Runs the evaluation at each of `settings.noiseMultipliers`; `progress` sees a line per region simulated.
    package static func run(_ settings: Settings, progress: (String) -> Void = { _ in }) -> [Outcome] {
        let trends = trends(settings)
        let start = ShopperSimulator.Parameters().start
        let periodSeconds = Int64(settings.periodHours * 3_600)
        let periods = Int(Int64(settings.days) * 86_400 / periodSeconds)
        let regions = (1...settings.regions).map { "region-\($0)" }
        // Exact releases per region and period, computed once.
        var exact: [String: [(categories: [UInt64: Double], shoppers: Double)]] = [:]
        var allCategories = Set<UInt64>()
        for (index, region) in regions.enumerated() {
            var parameters = ShopperSimulator.Parameters()
            parameters.users = settings.usersPerRegion
            parameters.days = settings.days
            parameters.seed = settings.seed &* 1_000 &+ UInt64(index + 1)
            parameters.shiftRate = 0.3
            parameters.trends = trends.filter { $0.region == nil || $0.region == region }.map { trend in
                let rank = settings.ranks.first { ShopperSimulator.categoryID(rank: $0) == trend.category } ?? 0
                return ShopperSimulator.DemandTrend(rank: rank, start: trend.start, factor: trend.factor)
            }
            let output = ShopperSimulator(parameters: parameters).run()
            var byPeriod = [[BehaviorEvent]](repeating: [], count: periods)
            var sampling = SplitMix64(seed: parameters.seed &+ 0xDEAD)
            var taken: [Int: [UInt64: Bool]] = [:]
            for event in output.events {
                let slot = Int((event.timestamp - start) / periodSeconds)
                guard slot >= 0 && slot < periods else { continue }
                // Each shopper is in a period's release with probability q, once drawn.
                if settings.samplingRate < 1 {
                    let sampled = taken[slot, default: [:]][event.user] ?? (sampling.nextUnit() < settings.samplingRate)
                    taken[slot, default: [:]][event.user] = sampled
                    if !sampled { continue }
                }
                byPeriod[slot].append(event)
            }
            exact[region] = byPeriod.map { CategoryDemand.counts($0, perShopperCategories: settings.perShopperCategories) }
            for release in exact[region] ?? [] { allCategories.formUnion(release.categories.keys) }
            progress("\(region): \(output.events.count) events, \(periods) periods of \(settings.periodHours) h")
        }
        let categories = allCategories.sorted()
        return settings.noiseMultipliers.map { z in
            evaluate(z: z, settings: settings, trends: trends, exact: exact, regions: regions, categories: categories,
                     periods: periods, periodSeconds: periodSeconds, start: start)
        }
    }

    static func evaluate(z: Double, settings: Settings, trends: [Trend],
                         exact: [String: [(categories: [UInt64: Double], shoppers: Double)]], regions: [String],
                         categories: [UInt64], periods: Int, periodSeconds: Int64, start: Int64) -> Outcome {
        let sigma = z  // per count, as the agents' release (QuantisedRelease.noisedSums at scale 1)
        var noise = GaussianNoise(generator: SplitMix64(seed: settings.seed &+ UInt64(z * 1_000)))
        var detector = DemandTrendDetector(settings: settings.detector)
        var warnings: [DemandTrendWarning] = []
        for period in 0..<periods {
            var total: [UInt64: Double] = [:]
            var totalShoppers = 0.0
            for region in regions {
                guard let release = exact[region]?[period] else { continue }
                // Every category is released, noised, also when no shopper touched it.
                var noised: [UInt64: Double] = [:]
                for category in categories {
                    noised[category] = (release.categories[category] ?? 0) + (sigma > 0 ? sigma * noise.standardNormal() : 0)
                }
                let shoppers = release.shoppers + (sigma > 0 ? sigma * noise.standardNormal() : 0)
                warnings += detector.observe(period: period, region: region, counts: noised, shoppers: shoppers,
                                             noiseVariance: sigma * sigma)
                for (category, count) in noised { total[category, default: 0] += count }
                totalShoppers += shoppers
            }
            warnings += detector.observe(period: period, region: DemandTrendDetector.allRegions, counts: total,
                                         shoppers: totalShoppers, noiseVariance: sigma * sigma * Double(regions.count))
        }
        // Score: each trend by its first matching warning; each warning true if it matches some trend.
        func startPeriod(_ trend: Trend) -> Int { Int((trend.start - start) / periodSeconds) }
        func matches(_ warning: DemandTrendWarning, _ trend: Trend) -> Bool {
            warning.category == trend.category && warning.direction == trend.direction
                && (warning.region == DemandTrendDetector.allRegions || trend.region == nil || warning.region == trend.region)
                && warning.period >= startPeriod(trend) && warning.period <= startPeriod(trend) + settings.window
        }
        var delays: [Double] = []
        var caughtSurges = 0, caughtCollapses = 0
        for trend in trends {
            if let first = warnings.filter({ matches($0, trend) }).map(\.period).min() {
                delays.append(Double(first - startPeriod(trend) + 1) * settings.periodHours)
                if trend.direction == .surge { caughtSurges += 1 } else { caughtCollapses += 1 }
            }
        }
        let falseWarnings = warnings.filter { warning in !trends.contains { matches(warning, $0) } }.count
        if settings.listFalseWarnings {
            for warning in warnings where !trends.contains(where: { matches(warning, $0) }) {
                let trend = trends.first { $0.category == warning.category }
                print("false warning: z=\(z) \(warning.region) cat \(warning.category) \(warning.direction) period \(warning.period) zs \(String(format: "%.1f", warning.zScore)) obs \(warning.observed) exp \(String(format: "%.1f", warning.expected)) trend: \(trend.map { "\($0.direction) \($0.region ?? "all") start \(startPeriod($0))" } ?? "none")")
            }
        }
        delays.sort()
        let caught = caughtSurges + caughtCollapses
        return Outcome(noiseMultiplier: z, trends: trends.count, caught: caught, caughtSurges: caughtSurges,
                       caughtCollapses: caughtCollapses, medianDelayHours: delays.isEmpty ? nil : delays[delays.count / 2],
                       warnings: warnings.count, falseWarnings: falseWarnings,
                       falseWarningsPerDay: Double(falseWarnings) / Double(settings.days),
                       precision: warnings.isEmpty ? 1 : Double(warnings.count - falseWarnings) / Double(warnings.count),
                       recall: trends.isEmpty ? 1 : Double(caught) / Double(trends.count))
    }
}
