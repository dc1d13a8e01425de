@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing
import TestSupport

@Suite("Shopper simulator")
struct SimulatorTests {
    private static let output: ShopperSimulator.Output = {
        var parameters = ShopperSimulator.Parameters()
        parameters.users = 400
        parameters.seed = 5
        return ShopperSimulator(parameters: parameters).run()
    }()

    private static var byUser: [UInt64: [BehaviorEvent]] { Dictionary(grouping: output.events, by: \.user) }

    @Test("The action mix matches Taobao's (±1.5 points): about 91% views and 2% purchases")
    func actionMix() {
        let events = Self.output.events
        let share = { (action: BehaviorEvent.Action) in Double(events.filter { $0.action == action }.count) / Double(events.count) }
        #expect(abs(share(.view) - 0.9086) < 0.015)
        #expect(abs(share(.purchase) - 0.0178) < 0.015)
    }

    @Test("Per-user statistics are in the range of the real histories")
    func perUserStatistics() {
        var categories: [Int] = [], same = 0, pairs = 0
        for events in Self.byUser.values {
            categories.append(Set(events.map(\.category)).count)
            for (a, b) in zip(events, events.dropFirst()) {
                pairs += 1
                same += a.category == b.category ? 1 : 0
            }
            #expect(zip(events, events.dropFirst()).allSatisfy { $0.timestamp <= $1.timestamp }, "time order")
        }
        let median = categories.sorted()[categories.count / 2]
        #expect((12...30).contains(median), "median distinct categories per user \(median) (real: 18)")
        let stay = Double(same) / Double(pairs)
        #expect((0.35...0.55).contains(stay), "P(next event in the same category) \(stay) (real: 0.44)")
        let perDay = Double(Self.output.events.count) / Double(Self.byUser.count) / 9
        #expect((6...18).contains(perDay), "events per user per day \(perDay) (real: ≈ 11)")
    }

    @Test("Shifted users move to their emerging categories after the ground-truth time")
    func shiftsAreReal() throws {
        let shifts = Self.output.shifts
        #expect((0.2...0.4).contains(Double(shifts.count) / 400), "share of shifted users")
        var before = 0.0, after = 0.0
        for shift in shifts {
            let events = try #require(Self.byUser[shift.user])
            let emerging = Set(shift.emergingCategories)
            #expect(events[shift.eventIndex].timestamp >= shift.time)
            if shift.eventIndex > 0 { #expect(events[shift.eventIndex - 1].timestamp < shift.time) }
            let head = events[..<shift.eventIndex], tail = events[shift.eventIndex...]
            before += Double(head.filter { emerging.contains($0.category) }.count) / Double(max(head.count, 1))
            after += Double(tail.filter { emerging.contains($0.category) }.count) / Double(max(tail.count, 1))
        }
        before /= Double(shifts.count)
        after /= Double(shifts.count)
        #expect(before < 0.05, "emerging categories before the shift: \(before)")
        #expect(after > 0.5, "emerging categories after the shift: \(after)")
    }

    @Test("Disengaged shoppers' sessions collapse to a few view-only ones after the ground-truth time")
    func disengagementIsReal() throws {
        var parameters = ShopperSimulator.Parameters()
        parameters.users = 400
        parameters.seed = 11
        parameters.disengagementRate = 0.2
        let output = ShopperSimulator(parameters: parameters).run()
        let byUser = Dictionary(grouping: output.events, by: \.user)
        let disengaged = output.shifts.filter { $0.kind == .disengagement }
        #expect((0.1...0.2).contains(Double(disengaged.count) / 400), "share of disengaged users \(disengaged.count)")
        #expect(Set(disengaged.map(\.user)).isDisjoint(with: output.shifts.filter { $0.kind == .interestShift }.map(\.user)))
        var rateBefore = 0.0, rateAfter = 0.0, intentAfter = 0
        for change in disengaged {
            let events = try #require(byUser[change.user])
            let head = events[..<change.eventIndex], tail = events[change.eventIndex...]
            if change.eventIndex < events.count { #expect(events[change.eventIndex].timestamp >= change.time) }
            if change.eventIndex > 0 { #expect(events[change.eventIndex - 1].timestamp < change.time) }
            let end = parameters.start + Int64(parameters.days) * 86_400
            rateBefore += Double(head.count) / Double(change.time - parameters.start)
            rateAfter += Double(tail.count) / Double(max(1, end - change.time))
            intentAfter += tail.filter { $0.action != .view }.count
        }
        #expect(rateAfter < 0.15 * rateBefore, "activity after \(rateAfter) vs before \(rateBefore)")
        #expect(intentAfter == 0, "carts, favourites or purchases after disengaging")
        // Control: without disengagement the same shoppers keep their activity (the check above can fail).
        parameters.disengagementRate = 0
        let steady = ShopperSimulator(parameters: parameters).run()
        #expect(steady.shifts.allSatisfy { $0.kind == .interestShift })
        #expect(steady.events.count > output.events.count * 103 / 100)
    }

    @Test("The same seed gives the same shoppers")
    func deterministic() {
        var parameters = ShopperSimulator.Parameters()
        parameters.users = 20
        #expect(ShopperSimulator(parameters: parameters).run().events == ShopperSimulator(parameters: parameters).run().events)
    }
}

@Suite("Federation simulator: secure aggregation's noise")
struct SecureSimulationTests {
    @Test("Under secure aggregation the regions' noise sums to z·S (variance within 3 %); without it, to √regions·z·S")
    func distributedNoise() {
        let (z, clip, regions) = (1.3, 2.0, 3)
        var noise = GaussianNoise(generator: SodiumRandom())
        func sumVariance(secure: Bool) -> Double {
            let sigma = FederationSimulation.regionNoise(noiseMultiplier: z, clipNorm: clip, regions: regions, secure: secure)
            var total = [Float](repeating: 0, count: 40_000)
            for _ in 0..<regions {
                let region = noise.noised([Float](repeating: 0, count: total.count), sigma: sigma)
                for i in total.indices { total[i] += region[i] }
            }
            return total.reduce(0) { $0 + Double($1) * Double($1) } / Double(total.count)
        }
        let target = (z * clip) * (z * clip)
        // 40,000 samples: the variance estimate's relative standard error is √(2/40000) ≈ 0.7 %.
        #expect(abs(sumVariance(secure: true) / target - 1) < 0.03)
        // Control: every region adding the whole zS triples the variance of the sum.
        #expect(abs(sumVariance(secure: false) / (Double(regions) * target) - 1) < 0.03)
        #expect(sumVariance(secure: false) / target > 2.5)
    }

    @Test("PLD calibration returns the smallest z within the target, below RDP's")
    func pldCalibration() async throws {
        let epsilon = { @Sendable (z: Double) in
            (try? PrivacyLossDistribution.subsampledGaussian(samplingRate: 0.05, noiseMultiplier: z).selfComposed(10)
                .epsilon(delta: 1e-6)) ?? .infinity
        }
        let (found, atZ, below) = try await offPool {
            let z = PrivacyLossDistribution.calibrate(samplingRate: 0.05, rounds: 10, delta: 1e-6, targetEpsilon: 1)
            return (z, z.map(epsilon) ?? .nan, z.map { epsilon($0 * (1 - 1e-4)) } ?? .nan)
        }
        let z = try #require(found)
        #expect(atZ <= 1)
        #expect(below > 1)
        let rdp = try #require(RDP.calibrate(q: 0.05, rounds: 10, delta: 1e-6, targetEpsilon: 1))
        #expect(z < rdp)
    }
}
