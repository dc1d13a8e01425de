@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

/// The demand-trend detector on series with known truth: stable demand with sampling and release
/// noise (no warning may come), a surge and a collapse (each must be caught, in the right direction),
/// and the control that shows the noise accounting matters.
@Suite("Demand-trend warnings: categories that surge or collapse against their own history")
struct DemandTrendTests {
    /// Binomial-ish counts: `shoppers` active, category c taken by each with probability p[c]; then
    /// Gaussian release noise of standard deviation `sigma` on every count.
    static func release(shoppers: Int, probabilities: [UInt64: Double], sigma: Double,
                        random: inout SplitMix64, noise: inout GaussianNoise<SplitMix64>) -> ([UInt64: Double], Double) {
        var counts: [UInt64: Double] = [:]
        for (category, p) in probabilities.sorted(by: { $0.key < $1.key }) {  // a fixed order: reproducible draws
            // Normal approximation of Binomial(shoppers, p), rounded, at least 0.
            let mean = Double(shoppers) * p, sd = (Double(shoppers) * p * (1 - p)).squareRoot()
            let exact = max(0, (mean + sd * noise.standardNormal()).rounded())
            counts[category] = exact + sigma * noise.standardNormal()
        }
        _ = random.next()
        return (counts, Double(shoppers) + sigma * noise.standardNormal())
    }

    static func run(sigma: Double, accountedVariance: Double, periods: Int = 40, seed: UInt64 = 1,
                    change: (category: UInt64, factor: Double, from: Int)? = nil,
                    settings: DemandTrendDetector.Settings = .init()) -> [DemandTrendWarning] {
        var random = SplitMix64(seed: seed)
        var noise = GaussianNoise(generator: SplitMix64(seed: seed &+ 99))
        var probabilities: [UInt64: Double] = [:]
        for category in 0..<2_000 { probabilities[UInt64(category)] = 0.3 / pow(Double(category + 1), 0.9) }
        var detector = DemandTrendDetector(settings: settings)
        var warnings: [DemandTrendWarning] = []
        for period in 0..<periods {
            var p = probabilities
            if let change, period >= change.from { p[change.category] = (p[change.category] ?? 0) * change.factor }
            // The day's rhythm: 150 shoppers at night to 1,000 in the evening; shares must not mind it.
            let shoppers = [150, 400, 700, 1_000][period % 4] + Int(random.next() % 50)
            let (counts, total) = release(shoppers: shoppers, probabilities: p, sigma: sigma, random: &random, noise: &noise)
            warnings += detector.observe(period: period, region: "r", counts: counts, shoppers: total,
                                         noiseVariance: accountedVariance)
        }
        return warnings
    }

    @Test("Stable demand: at most 3 warnings over 3 × 2,000 categories × 40 periods, exact or noised (σ = 8) releases")
    func stableDemandIsQuiet() {
        // 2,000 × 32 tested periods × 3 seeds ≈ 190,000 tests of each kind: at most a handful may fire.
        var exact = 0, noised = 0
        for seed in 1...3 as ClosedRange<UInt64> {
            exact += Self.run(sigma: 0, accountedVariance: 0, seed: seed).count
            noised += Self.run(sigma: 8, accountedVariance: 64, seed: seed).count
        }
        #expect(exact <= 3 && noised <= 3, "exact \(exact), noised \(noised)")
    }

    @Test("Stable demand with a short warm-up (4 periods) and heavy release noise (σ = 16): categories nobody shops do not warn")
    func noiseAroundNothingIsQuiet() {
        // Of 2,000 categories most have a handful of shoppers or none; their noised counts can teach a
        // baseline below zero or rise a few shoppers above it. Neither is a trend.
        var settings = DemandTrendDetector.Settings()
        settings.warmUp = 4
        var noised = 0
        for seed in 1...3 as ClosedRange<UInt64> {
            noised += Self.run(sigma: 16, accountedVariance: 256, seed: seed, settings: settings).count
        }
        #expect(noised <= 3, "noised \(noised)")
    }

    @Test("A category that triples, or falls to a quarter, is warned within a day (4 periods), once, in the right direction, with the release noise")
    func surgeAndCollapseAreCaught() throws {
        for (category, factor) in [(UInt64(5), 3.0), (UInt64(2), 0.25)] {
            let warnings = Self.run(sigma: 8, accountedVariance: 64, change: (category, factor, 20))
            let first = try #require(warnings.first { $0.category == category }, "\(warnings)")
            // Period 20 is a night (150 shoppers): with σ = 8 on every count, a collapse to a quarter may
            // need the rest of that day.
            #expect(first.period >= 20 && first.period <= 23, "\(first)")
            #expect(first.direction == (factor > 1 ? .surge : .collapse))
            #expect((first.change > 0) == (factor > 1) && abs(first.change) >= 0.5 && first.confidence > 0.99, "\(first)")
            #expect(warnings.filter { $0.category != category }.count <= 1, "no other category: \(warnings)")
            #expect(warnings.filter { $0.category == category }.count == 1, "one warning per episode: \(warnings)")
        }
    }

    @Test("A period with fewer active shoppers than minimum_period_shoppers (nothing ingested: only noise) neither warns nor teaches")
    func quietPeriodsAreSkipped() {
        var detector = DemandTrendDetector()
        var warnings: [DemandTrendWarning] = []
        for period in 0..<20 {
            warnings += detector.observe(period: period, region: "r", counts: [1: 60, 2: 40], shoppers: 200, noiseVariance: 0)
        }
        // Noise around nothing: wild shares, skipped.
        warnings += detector.observe(period: 20, region: "r", counts: [1: 9, 2: -3], shoppers: 4, noiseVariance: 64)
        #expect(warnings.isEmpty)
        // Control: the same collapse of category 1 with enough shoppers warns.
        warnings += detector.observe(period: 21, region: "r", counts: [1: 15, 2: 185], shoppers: 200, noiseVariance: 0)
        #expect(warnings.map(\.category) == [1, 2] || warnings.map(\.category) == [2, 1], "\(warnings)")
    }

    @Test("The simulator's injected trend multiplies its category's share of shoppers from its start, and leaves the rest")
    func simulatedTrend() {
        var parameters = ShopperSimulator.Parameters()
        (parameters.users, parameters.days, parameters.shiftRate) = (3_000, 6, 0)
        let start = parameters.start + 3 * 86_400
        parameters.trends = [.init(rank: 2, start: start, factor: 3), .init(rank: 4, start: start, factor: 0.25)]
        let events = ShopperSimulator(parameters: parameters).run().events
        func share(_ rank: Int, after: Bool) -> Double {
            let part = events.filter { ($0.timestamp >= start) == after }
            let counts = CategoryDemand.counts(part, perShopperCategories: 3)
            return (counts.categories[ShopperSimulator.categoryID(rank: rank)] ?? 0) / counts.shoppers
        }
        let surge = share(2, after: true) / share(2, after: false), collapse = share(4, after: true) / share(4, after: false)
        let other = share(1, after: true) / share(1, after: false)
        #expect(surge > 2 && surge < 3.5, "\(surge)")
        #expect(collapse > 0.15 && collapse < 0.45, "\(collapse)")
        #expect(other > 0.8 && other < 1.2, "\(other)")
    }

    @Test("Control (must fail to be quiet): the same noised releases without their noise accounted for raise false warnings")
    func unaccountedNoiseRaisesFalseWarnings() {
        let warnings = Self.run(sigma: 8, accountedVariance: 0)
        #expect(warnings.count > 20, "\(warnings.count) warnings")
    }

    @Test("Category demand: each shopper counts once in at most k categories (their most active), and once in the total")
    func demandCounts() {
        let events = [(1, 10), (1, 10), (1, 11), (1, 12), (1, 13), (2, 10), (2, 14), (2, 14)].map { user, category in
            BehaviorEvent(user: UInt64(user), item: 1, category: UInt64(category), action: .view, timestamp: 0)
        }
        let (counts, shoppers) = CategoryDemand.counts(events, perShopperCategories: 2)
        #expect(shoppers == 2)
        #expect(counts == [10: 2, 11: 1, 14: 1], "shopper 1: 10 (twice) and 11 (ties by smaller id); shopper 2: 14 and 10")
    }

    @Test("The aggregator's desk: one release per agent and round of the model's length, each region and the sum analysed, a surge warned in its region and in total")
    func desk() {
        let desk = DemandTrendDesk(categories: 50)
        var noise = GaussianNoise(generator: SplitMix64(seed: 5))
        func release(round: UInt64, surge: Bool) -> DemandRelease {
            var counts = (0..<50).map { index in 400 * 0.3 / pow(Double(index + 1), 0.9) }
            if surge { counts[7] *= 3 }
            return DemandRelease(round: round, noiseMultiplier: 2, shoppers: 400 + 2 * noise.standardNormal(),
                                 counts: counts.map { $0 + 2 * noise.standardNormal() })
        }
        #expect(desk.record(DemandRelease(round: 1, noiseMultiplier: 2, shoppers: 1, counts: [1, 2]), from: "r1", openRound: 1)?
            .contains("categories") == true)
        #expect(desk.record(release(round: 1, surge: false), from: "r1", openRound: 2)?.contains("not open") == true)
        // An insider's absurd counts are refused, whatever the round.
        for lie in [1e308, .nan, -.infinity, 2e6] {
            var forged = release(round: 1, surge: false)
            forged.counts[3] = lie
            #expect(desk.record(forged, from: "r1", openRound: 1)?.contains("finite") == true, "\(lie)")
        }
        var warnings: [DemandTrendWarning] = []
        for round in 1...16 as ClosedRange<UInt64> {
            #expect(desk.record(release(round: round, surge: round >= 12), from: "r1", openRound: round) == nil)
            #expect(desk.record(release(round: round, surge: false), from: "r2", openRound: round) == nil)
            #expect(desk.record(release(round: round, surge: false), from: "r2", openRound: round) != nil, "a second release")
            let closed = desk.close(round: round)
            #expect(closed.regions == 2)
            warnings += closed.warnings
        }
        #expect(warnings.contains { $0.category == 7 && $0.region == "r1" && $0.direction == .surge && $0.period == 12 },
                "\(warnings)")
        #expect(warnings.contains { $0.category == 7 && $0.region == DemandTrendDetector.allRegions && $0.direction == .surge })
        #expect(!warnings.contains { $0.region == "r2" || $0.category != 7 }, "\(warnings)")
    }

    @Test("The release plan charges demand counts as a subsampled Gaussian at the round's rate with sensitivity √(k+1), and plans compose it")
    func demandPlan() throws {
        let plan = RoundReleasePlan(samplingRate: 0.5, noiseMultiplier: 1, dimension: 1_000, demandNoiseMultiplier: 2)
        let demand = try #require(plan.demand(round: 3))
        #expect(demand.mechanism == "demand_counts" && demand.samplingRate == 0.5 && demand.round == 3)
        #expect(abs(demand.noiseMultiplier - QuantisedRelease.accountedSumsNoiseMultiplier(2, count: 4)) < 1e-15)
        #expect(abs(demand.noiseMultiplier - 1) < 1e-5, "z / √(k + 1) = 2 / 2, less the grid's step")
        #expect(plan.releases(round: 3).map(\.mechanism) == ["model_update", "demand_counts"])
        let without = RoundReleasePlan(samplingRate: 0.5, noiseMultiplier: 1, dimension: 1_000)
        #expect(RDP.epsilon(rdp: plan.rdp(rounds: 10), delta: 1e-6).epsilon
                > RDP.epsilon(rdp: without.rdp(rounds: 10), delta: 1e-6).epsilon)
        #expect(without.demand(round: 3) == nil)
    }
}
