@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

@Suite("Interest-drift detection")
struct DriftDetectorTests {
    /// A user stream: categories from `mixture` (weights), with the surprise a model that learned the
    /// user's long-run interests would give (−log of a smoothed share over 20 categories).
    struct Stream {
        var random: SplitMix64
        var counts = [Double](repeating: 0.05, count: 20)

        mutating func next(from mixture: [Int32: Double]) -> (category: Int32, surprise: Double) {
            var u = random.nextUnit() * mixture.values.reduce(0, +)
            var category = mixture.keys.sorted().last ?? 0
            for (key, weight) in mixture.sorted(by: { $0.key < $1.key }) {
                if u < weight { category = key; break }
                u -= weight
            }
            let surprise = -log(counts[Int(category)] / counts.reduce(0, +))
            for index in counts.indices { counts[index] *= 0.995 }
            counts[Int(category)] += 1
            return (category, surprise)
        }
    }

    static let before: [Int32: Double] = [1: 0.5, 2: 0.3, 3: 0.2]
    static let after: [Int32: Double] = [7: 0.6, 8: 0.4]

    @Test("A stable shopper raises no alert over 2,000 events")
    func quietOnStableUser() {
        let detector = DriftDetector()
        for seed in 1...5 {
            var stream = Stream(random: SplitMix64(seed: UInt64(seed)))
            var state = DriftDetector.UserState()
            var alerts = 0
            for _ in 0..<2_000 {
                let event = stream.next(from: Self.before)
                if detector.update(&state, category: event.category, action: 0, surprise: event.surprise, threshold: 12) != nil {
                    alerts += 1
                }
            }
            #expect(alerts == 0, "seed \(seed): \(alerts) alerts on a stable user")
        }
    }

    @Test("An abrupt shift is detected within a few events, once, with its direction")
    func detectsShiftOnceWithDirection() throws {
        let detector = DriftDetector()
        for seed in 1...5 {
            var stream = Stream(random: SplitMix64(seed: UInt64(seed)))
            var state = DriftDetector.UserState()
            for _ in 0..<200 {
                let event = stream.next(from: Self.before)
                #expect(detector.update(&state, category: event.category, action: 0, surprise: event.surprise, threshold: 12) == nil)
            }
            var detections: [(index: Int, detection: DriftDetector.Detection)] = []
            for index in 0..<300 {
                let event = stream.next(from: Self.after)
                if let detection = detector.update(&state, category: event.category, action: 1, surprise: event.surprise,
                                                   threshold: 12) {
                    detections.append((index, detection))
                }
            }
            let first = try #require(detections.first, "seed \(seed): shift not detected")
            #expect(first.index < 5, "seed \(seed): detected after \(first.index + 1) events")
            #expect(detections.count == 1, "seed \(seed): one shift raised \(detections.count) alerts")
            // The strongest emerging category is a new one (a residue of the old mix may follow it).
            #expect(first.detection.emerging.first.map { [7, 8].contains($0.category) } == true,
                    "seed \(seed): \(first.detection.emerging)")
            #expect(first.detection.fading.first.map { [1, 2, 3].contains($0.category) } == true)
            #expect(first.detection.score >= 12)
        }
    }

    @Test("Profiles: Jensen–Shannon is 0 for equal profiles and ln 2 for disjoint ones")
    func jensenShannonBounds() {
        var a = DecayedProfile(), b = DecayedProfile(), c = DecayedProfile()
        for category: Int32 in [1, 2, 1, 3] {
            a.add(category, weight: 1, decay: 0.9, capacity: 8)
            b.add(category, weight: 1, decay: 0.9, capacity: 8)
        }
        c.add(9, weight: 1, decay: 0.9, capacity: 8)
        #expect(abs(DecayedProfile.jensenShannon(a, b)) < 1e-12)
        #expect(abs(DecayedProfile.jensenShannon(a, c) - log(2)) < 1e-12)
        // The cap evicts the smallest weight; decay keeps working over very long streams.
        var long = DecayedProfile()
        for index in 0..<100_000 { long.add(Int32(index % 50), weight: 1, decay: 0.98, capacity: 8) }
        #expect(long.categories.count == 8)
        #expect(long.total.isFinite && long.total > 0)
    }
}

@Suite("Federated drift thresholds from noisy histograms")
struct DriftThresholdTests {
    @Test("Bins are log-spaced and every score falls in the bin whose edge is below it")
    func binning() {
        #expect(DriftHistogram.edges.count == 49)
        #expect(DriftHistogram.bin(of: 0) == 0 && DriftHistogram.bin(of: -1) == 0)
        #expect(DriftHistogram.bin(of: .infinity) == 48 && DriftHistogram.bin(of: 5000) == 48)
        for score in [0.1, 0.5, 3.3, 17, 999.9] {
            let bin = DriftHistogram.bin(of: score)
            #expect(DriftHistogram.edges[bin] <= score && (bin == 48 || score < DriftHistogram.edges[bin + 1]))
        }
    }

    /// Three agents' users with heavy-tailed scores; each releases a noisy histogram (σ = 5). The
    /// threshold picked from the merged release gives an alert rate near the target on the true scores.
    @Test("The threshold from three merged noisy histograms yields the target alert rate on the true scores")
    func thresholdFromMergedNoisyHistograms() throws {
        var random = SplitMix64(seed: 8)
        let agents = (0..<3).map { _ in (0..<40_000).map { _ in exp(1.0 + 0.8 * random.nextGaussian()) } }
        var noise = GaussianNoise(generator: SplitMix64(seed: 9))
        var merged = [Double](repeating: 0, count: DriftHistogram.edges.count)
        for scores in agents {
            let released = DriftHistogram.release(DriftHistogram.counts(scores), sigma: 5, noise: &noise)
            for index in merged.indices { merged[index] += released[index] }
        }
        let target = 0.005
        let threshold = try #require(DriftHistogram.threshold(merged: merged, targetRate: target))
        let all = agents.flatMap { $0 }
        let rate = Double(all.filter { $0 >= threshold }.count) / Double(all.count)
        // At most the target (up to noise), and within one bin (×1.21) of the exact quantile.
        #expect(rate <= target * 1.3, "alert rate \(rate) at threshold \(threshold)")
        let exact = all.sorted()[Int((1 - target) * Double(all.count))]
        #expect(threshold >= exact / 1.25 && threshold <= exact * 1.5, "threshold \(threshold), exact quantile \(exact)")
        #expect(DriftHistogram.threshold(merged: [Double](repeating: 0, count: 49), targetRate: target) == nil)
    }
}
