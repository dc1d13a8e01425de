import FedIO
package import FedLogic
import FedModel
package import FedNode
import Foundation

/// A generative model of shoppers: the demo's default data and the ground truth for drift.
///
/// Categories have Zipf popularity and their own Zipf-popular items. Each shopper has a few core
/// interests (categories drawn by popularity, with random weights) and explores the rest of the
/// catalogue now and then. Shoppers browse in sessions that start at the hours real shoppers do,
/// stay in one category for a while, and act with Taobao's mix (mostly views, few purchases). Some
/// shoppers' interests shift abruptly at a known time: their core interests are replaced by new ones
/// they had not shown; the ground truth is returned next to the events.
///
/// Defaults are fitted to the Taobao UserBehavior excerpts in `../shared/data` (see docs/SIMULATOR.md).
package struct ShopperSimulator: Sendable {
    package struct Parameters: Sendable, Equatable {
        package var users = 1_000
        package var days = 9
        package var seed: UInt64 = 1
        package var categories = 4_000
        /// Zipf exponent of category popularity (fitted: 1.06 on ranks 2–300).
        package var popularityExponent = 1.06
        /// Core interests per shopper.
        package var coreInterests = 6
        /// Probability that a session browses outside the core interests.
        package var exploration = 0.35
        /// Probability of keeping the current category; re-draws from the core interests also repeat
        /// categories, so 0.36 gives the fitted P(next event in the same category) ≈ 0.44.
        package var stickiness = 0.36
        /// Mean sessions per shopper per day (fitted: 1.9).
        package var sessionsPerDay = 1.9
        /// Shoppers differ in how often they come: each one's session rate is Gamma with this shape and
        /// mean `sessionsPerDay` (fitted: 3.4, a coefficient of variation of 0.54 beyond Poisson noise on
        /// the 329 sample users); 0 gives every shopper the same rate.
        package var sessionRateShape = 3.4
        /// Mean events per session (fitted: 6; geometric, so the median is about 4).
        package var eventsPerSession = 6.0
        /// Share of shoppers whose interests shift once (0 disables shifts).
        package var shiftRate = 0.3
        /// When shifts happen, as fractions of the simulated period (uniform in this range).
        package var shiftWindow = 0.35..<0.65
        /// Share of the other shoppers who disengage once: from a time in `disengagementWindow` on, they
        /// keep `disengagedActivity` of their sessions, and those sessions only view (0 disables it).
        package var disengagementRate = 0.0
        package var disengagementWindow = 0.35..<0.65
        package var disengagedActivity = 0.05
        /// Start of the simulated period, Unix seconds (2017-11-25 00:00 +08:00, like the Taobao data).
        package var start: Int64 = 1_511_539_200
        /// Category-level demand changes (a campaign, a stock-out): ground truth for demand-trend warnings.
        package var trends: [DemandTrend] = []

        package init() {}
    }

    /// From `start` on, category `rank` gets `factor` times its usual share of the shoppers' attention:
    /// a factor above 1 is a surge (extra category choices switch to it), below 1 a collapse (choices of
    /// it are redrawn elsewhere with probability 1 − factor).
    package struct DemandTrend: Sendable, Equatable, Codable {
        package var rank: Int
        package var start: Int64
        package var factor: Double
        package init(rank: Int, start: Int64, factor: Double) { (self.rank, self.start, self.factor) = (rank, start, factor) }
        package var category: UInt64 { ShopperSimulator.categoryID(rank: rank) }
    }

    /// One injected change of a shopper: an interest shift or a disengagement.
    package struct Shift: Sendable, Equatable, Codable {
        package enum Kind: String, Sendable, Codable {
            /// The core interests were replaced by new ones.
            case interestShift = "interest_shift"
            /// Activity collapsed to a few view-only sessions.
            case disengagement
        }

        package var kind: Kind = .interestShift
        package var user: UInt64
        /// Unix seconds of the first session after the change (for a disengagement: when it began).
        package var time: Int64
        /// Index in the user's time-ordered events of the first event after the shift.
        package var eventIndex: Int
        package var fadingCategories: [UInt64]
        package var emergingCategories: [UInt64]

        package init(kind: Kind = .interestShift, user: UInt64, time: Int64, eventIndex: Int,
                     fadingCategories: [UInt64], emergingCategories: [UInt64]) {
            (self.kind, self.user, self.time, self.eventIndex) = (kind, user, time, eventIndex)
            (self.fadingCategories, self.emergingCategories) = (fadingCategories, emergingCategories)
        }

        enum CodingKeys: String, CodingKey {
            case kind, user, time, eventIndex, fadingCategories, emergingCategories
        }

        /// Ground-truth files written before disengagement existed have no `kind`: interest shifts.
        package init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            kind = try c.decodeIfPresent(Kind.self, forKey: .kind) ?? .interestShift
            user = try c.decode(UInt64.self, forKey: .user)
            time = try c.decode(Int64.self, forKey: .time)
            eventIndex = try c.decode(Int.self, forKey: .eventIndex)
            fadingCategories = try c.decodeIfPresent([UInt64].self, forKey: .fadingCategories) ?? []
            emergingCategories = try c.decodeIfPresent([UInt64].self, forKey: .emergingCategories) ?? []
        }
    }

    package struct Output: Sendable {
        /// Events grouped by user, each user's in time order.
        package var events: [BehaviorEvent]
        package var shifts: [Shift]
    }

    /// Share of each action (fitted on `ub_head_users.csv`: 3926 / 190 / 128 / 77 of 4321).
    static let actionShares: [(BehaviorEvent.Action, Double)] = [(.view, 0.9086), (.cart, 0.0440), (.favourite, 0.0296),
                                                                 (.purchase, 0.0178)]
    /// Share of events per hour of day, China time (fitted on `ub_head_users.csv`).
    static let hourProfile: [Double] = [0.040, 0.012, 0.005, 0.003, 0.008, 0.001, 0.017, 0.024, 0.037, 0.038, 0.061, 0.056,
                                        0.046, 0.035, 0.045, 0.072, 0.068, 0.037, 0.031, 0.056, 0.065, 0.062, 0.119, 0.062]

    package let parameters: Parameters
    private let categoryCDF: [Double]

    package init(parameters: Parameters) {
        precondition(parameters.users > 0 && parameters.days > 0 && parameters.categories > parameters.coreInterests * 3)
        self.parameters = parameters
        categoryCDF = Self.cumulative((1...parameters.categories).map { pow(Double($0), -parameters.popularityExponent) })
    }

    /// Platform category id of popularity rank r (0-based): spread out like real opaque ids.
    package static func categoryID(rank: Int) -> UInt64 { UInt64(1_000 + rank * 7_919 % 9_999_991) }

    /// Streams the shoppers in groups of `usersPerBatch`, so any population fits in memory.
    ///
    /// - Parameter progress: counts the shoppers simulated, in a phase named `label`.
    package func run(usersPerBatch: Int, progress: ProgressReporter = .silent, label: String = "simulating shoppers",
                     handle: (Output) throws -> Void) rethrows {
        progress.begin(label, total: parameters.users, unit: "shoppers")
        var start = 0
        while start < parameters.users {
            var events: [BehaviorEvent] = []
            var shifts: [Shift] = []
            for user in start..<min(start + usersPerBatch, parameters.users) {
                var random = SplitMix64(seed: parameters.seed &* 0x9E37_79B9 &+ UInt64(user) &* 0x85EB_CA6B &+ 1)
                simulate(user: UInt64(user + 1), random: &random, events: &events, shifts: &shifts)
                progress.advance()
            }
            try handle(Output(events: events, shifts: shifts))
            start += usersPerBatch
        }
        progress.finish()
    }

    /// Every shopper at once.
    ///
    /// - Parameter progress: counts the shoppers simulated, in a phase named "simulating shoppers".
    package func run(progress: ProgressReporter = .silent) -> Output {
        var events: [BehaviorEvent] = []
        var shifts: [Shift] = []
        events.reserveCapacity(Int(Double(parameters.users * parameters.days) * parameters.sessionsPerDay
                                   * parameters.eventsPerSession * 1.1))
        progress.begin("simulating shoppers", total: parameters.users, unit: "shoppers")
        for user in 0..<parameters.users {
            var random = SplitMix64(seed: parameters.seed &* 0x9E37_79B9 &+ UInt64(user) &* 0x85EB_CA6B &+ 1)
            simulate(user: UInt64(user + 1), random: &random, events: &events, shifts: &shifts)
            progress.advance()
        }
        progress.finish()
        return Output(events: events, shifts: shifts)
    }

    private func simulate(user: UInt64, random: inout SplitMix64, events: inout [BehaviorEvent], shifts: inout [Shift]) {
        var interests = drawInterests(excluding: [], random: &random)
        let period = Int64(parameters.days) * 86_400
        let shiftTime: Int64? = random.nextUnit() < parameters.shiftRate
            ? parameters.start + Int64(Double(period) * random.nextUniform(in: parameters.shiftWindow)) : nil
        var shifted = false
        // Drawn only when enabled, so that a simulation without disengagement is the one it always was.
        var disengagedFrom: Int64?
        if shiftTime == nil && parameters.disengagementRate > 0 && random.nextUnit() < parameters.disengagementRate {
            disengagedFrom = parameters.start + Int64(Double(period) * random.nextUniform(in: parameters.disengagementWindow))
            shifts.append(Shift(kind: .disengagement, user: user, time: disengagedFrom ?? 0, eventIndex: -1,
                                fadingCategories: interests.categories.map { Self.categoryID(rank: $0) },
                                emergingCategories: []))
        }
        let disengagementRecord = shifts.count - 1
        let firstIndex = events.count
        let sessionRate = parameters.sessionRateShape > 0
            ? parameters.sessionsPerDay * gamma(shape: parameters.sessionRateShape, random: &random)
                / parameters.sessionRateShape
            : parameters.sessionsPerDay
        // Session start times, sorted.
        var starts: [Int64] = []
        for day in 0..<parameters.days {
            for _ in 0..<poisson(sessionRate, random: &random) {
                let hour = Self.sample(Self.hourProfileCDF, random: &random)
                let seconds = Int64(hour * 3_600) + Int64(random.nextUnit() * 3_600)
                starts.append(parameters.start + Int64(day) * 86_400 + seconds - 8 * 3_600)  // China time → UTC
            }
        }
        starts.sort()
        var lastEnd = Int64.min
        for sessionStart in starts {
            var time = max(sessionStart, lastEnd + 1_800)
            let disengaged = disengagedFrom.map { time >= $0 } ?? false
            if disengaged {
                if shifts[disengagementRecord].eventIndex < 0 {
                    shifts[disengagementRecord].eventIndex = events.count - firstIndex
                    shifts[disengagementRecord].time = time
                }
                if random.nextUnit() >= parameters.disengagedActivity { continue }
            }
            if let shiftTime, !shifted, time >= shiftTime {
                let fading = interests.categories
                interests = drawInterests(excluding: Set(fading), random: &random)
                shifted = true
                shifts.append(Shift(user: user, time: time, eventIndex: events.count - firstIndex,
                                    fadingCategories: fading.map { Self.categoryID(rank: $0) },
                                    emergingCategories: interests.categories.map { Self.categoryID(rank: $0) }))
            }
            let exploring = random.nextUnit() < parameters.exploration
            var category = exploring ? Self.sample(categoryCDF, random: &random) : interests.draw(random: &random)
            category = trended(category, at: time, random: &random)
            let length = geometric(mean: parameters.eventsPerSession, random: &random)
            for position in 0..<length {
                if position > 0 && random.nextUnit() >= parameters.stickiness {
                    category = exploring && random.nextUnit() < 0.5
                        ? Self.sample(categoryCDF, random: &random) : interests.draw(random: &random)
                    category = trended(category, at: time, random: &random)
                }
                let item = itemID(category: category, random: &random)
                let drawn = Self.actionShares[Self.sample(Self.actionCDF, random: &random)].0
                let action = disengaged ? .view : drawn
                events.append(BehaviorEvent(user: user, item: item, category: Self.categoryID(rank: category),
                                            action: action, timestamp: time))
                time += 5 + Int64(-log(max(random.nextUnit(), 1e-12)) * 55)
            }
            lastEnd = time
        }
        if disengagedFrom != nil && shifts[disengagementRecord].eventIndex < 0 {
            shifts[disengagementRecord].eventIndex = events.count - firstIndex
        }
    }

    /// `category` after the demand trends in force at `time`. No random draw without trends, so
    /// simulations without them are unchanged.
    private func trended(_ category: Int, at time: Int64, random: inout SplitMix64) -> Int {
        var category = category
        for trend in parameters.trends where time >= trend.start && trend.rank < categoryCDF.count {
            if trend.factor < 1, category == trend.rank, random.nextUnit() >= trend.factor {
                category = Self.sample(categoryCDF, random: &random)
            } else if trend.factor > 1 {
                let share = categoryCDF[trend.rank] - (trend.rank > 0 ? categoryCDF[trend.rank - 1] : 0)
                if random.nextUnit() < (trend.factor - 1) * share { category = trend.rank }
            }
        }
        return category
    }

    /// A shopper's core interests: categories drawn by popularity, with random (Dirichlet-like) weights.
    private struct Interests {
        var categories: [Int]
        var cdf: [Double]
        func draw(random: inout SplitMix64) -> Int { categories[ShopperSimulator.sample(cdf, random: &random)] }
    }

    private func drawInterests(excluding: Set<Int>, random: inout SplitMix64) -> Interests {
        var chosen: [Int] = []
        while chosen.count < parameters.coreInterests {
            let category = Self.sample(categoryCDF, random: &random)
            if !excluding.contains(category) && !chosen.contains(category) { chosen.append(category) }
        }
        let weights = chosen.map { _ in -log(max(random.nextUnit(), 1e-12)) }
        return Interests(categories: chosen, cdf: Self.cumulative(weights))
    }

    /// Items: each category has ~ 20 + 2000·share items with Zipf(1.1) popularity inside it.
    private func itemID(category: Int, random: inout SplitMix64) -> UInt64 {
        let share = categoryCDF[category] - (category > 0 ? categoryCDF[category - 1] : 0)
        let items = 20 + Int(2_000 * share * Double(parameters.categories) / 50)
        let rank = Int(pow(random.nextUnit(), 2.5) * Double(items))  // skewed towards popular items
        return UInt64(category) &* 100_003 &+ UInt64(rank) &+ 1
    }

    private static let actionCDF = cumulative(actionShares.map(\.1))
    private static let hourProfileCDF = cumulative(hourProfile)

    static func cumulative(_ weights: [Double]) -> [Double] {
        let total = weights.reduce(0, +)
        var running = 0.0
        return weights.map { running += $0 / total; return running }
    }

    /// Index drawn from a cumulative distribution (binary search).
    static func sample(_ cdf: [Double], random: inout SplitMix64) -> Int {
        let u = random.nextUnit()
        var low = 0, high = cdf.count - 1
        while low < high {
            let middle = (low + high) / 2
            if cdf[middle] < u { low = middle + 1 } else { high = middle }
        }
        return low
    }

    private func poisson(_ mean: Double, random: inout SplitMix64) -> Int {
        let limit = exp(-mean)
        var product = random.nextUnit(), count = 0
        while product > limit {
            count += 1
            product *= random.nextUnit()
        }
        return count
    }

    /// Gamma(shape, 1) by Marsaglia and Tsang (shape ≥ 1; boosted by U^(1/shape) below 1).
    private func gamma(shape: Double, random: inout SplitMix64) -> Double {
        if shape < 1 { return gamma(shape: shape + 1, random: &random) * pow(max(random.nextUnit(), 1e-300), 1 / shape) }
        let d = shape - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            // A standard normal by Box–Muller.
            let x = (-2 * log(max(random.nextUnit(), 1e-300))).squareRoot() * cos(2 * Double.pi * random.nextUnit())
            let v = pow(1 + c * x, 3)
            guard v > 0 else { continue }
            let u = random.nextUnit()
            if log(max(u, 1e-300)) < 0.5 * x * x + d - d * v + d * log(v) { return d * v }
        }
    }

    private func geometric(mean: Double, random: inout SplitMix64) -> Int {
        1 + Int(log(max(random.nextUnit(), 1e-12)) / log(1 - 1 / mean))
    }
}
