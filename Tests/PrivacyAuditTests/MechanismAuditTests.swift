@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

/// Audits 2–4: the mechanism's three ingredients — clipping bounds every user's influence, noise has
/// exactly the claimed distribution, users are Poisson-sampled at the claimed rate from the CSPRNG.
@Suite("Audits 2–4: clipping, noise, sampling")
struct MechanismAuditTests {
    // MARK: 2. Clipping

    /// Audit 2: whatever a user's update is — huge, NaN, infinite, or all its mass on one coordinate —
    /// its contribution to the sum has L2 norm at most S, and a non-finite update contributes nothing.
    @Test("Audit 2: clipping bounds adversarial users (huge, NaN, ∞, all mass on one coordinate) to norm S")
    func clippingHoldsAgainstAdversarialUsers() {
        let S = 0.7
        let huge = [Float](repeating: 1e30, count: 64)
        var oneHot = [Float](repeating: 0, count: 64)
        oneHot[17] = 3e38
        var nan = [Float](repeating: 0.1, count: 64)
        nan[5] = .nan
        var infinite = [Float](repeating: 0.1, count: 64)
        infinite[9] = -.infinity
        let tiny = [Float](repeating: 1e-3, count: 64)
        for (name, update) in [("huge", huge), ("one-hot", oneHot), ("NaN", nan), ("infinite", infinite), ("tiny", tiny)] {
            let norm = update.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            let factor = Clipping.factor(norm: norm, bound: S)
            let contribution = update.map { Double($0) * factor }
            let clippedNorm = factor == 0 ? 0 : contribution.reduce(0) { $0 + $1 * $1 }.squareRoot()
            #expect(clippedNorm <= S * (1 + 1e-12), "\(name): \(clippedNorm)")
            if !norm.isFinite { #expect(factor == 0, "\(name) must be dropped") }
            if name == "tiny" { #expect(factor == 1, "an update inside the bound is unchanged") }
        }
    }

    /// Audit 2, through the real training path: with exploding parameters every user's gradient is
    /// enormous, yet the clipped sum of B users has norm ≤ B·S/η·η = B·S; with NaN parameters every user is
    /// dropped and the sum stays finite (zero).
    @Test("Audit 2: through the real per-user training path, the released sum has norm ≤ users × S, NaN users dropped")
    func clippingThroughTraining() {
        let shape = LSTMShape(categories: 12, embedding: 4, hidden: 5, actionEmbedding: 2, gapEmbedding: 2)
        var random = SplitMix64(seed: 3)
        let users = (0..<9).map { _ in
            EventSequence(categories: (0..<7).map { _ in Int32(random.next() % 11) }, actions: [UInt8](repeating: 0, count: 7),
                          gaps: [UInt8](repeating: 1, count: 7))
        }
        let h = RoundHyperparameters(samplingRate: 1, clipNorm: 0.25, noiseMultiplier: 0, learningRate: 0.5,
                                     localSteps: 1, sequenceLength: 10)
        var exploding = LSTMParameters<Float>(shape: shape, seed: 1)
        exploding.values = exploding.values.map { $0 * 400 }
        for steps: UInt32 in [1, 3] {
            var hyperparameters = h
            hyperparameters.localSteps = steps
            let result = LocalTraining(hyperparameters: hyperparameters).run(global: exploding, users: users)
            let norm = result.deltaSum.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            #expect(norm <= Double(users.count) * 0.25 * (1 + 1e-5), "local steps \(steps): ‖Σ‖ = \(norm)")
            #expect(result.clippedUsers == users.count)
        }
        var poisoned = LSTMParameters<Float>(shape: shape, seed: 1)
        poisoned.values[poisoned.values.count - 1] = .nan
        for steps: UInt32 in [1, 3] {
            var hyperparameters = h
            hyperparameters.localSteps = steps
            let result = LocalTraining(hyperparameters: hyperparameters).run(global: poisoned, users: users)
            #expect(result.deltaSum.allSatisfy { $0 == 0 }, "NaN users must contribute nothing (local steps \(steps))")
        }
    }

    // MARK: 3. Noise

    /// Audit 3: over many releases of an all-zero sum, the empirical variance of the noise matches
    /// (zS)² (chi-square test of the variance at 99.9 %), its distribution is normal (Kolmogorov–Smirnov
    /// at 99.9 %), and the noise of two releases is uncorrelated — all drawn by the production path
    /// (``QuantisedRelease``: the discrete Gaussian on the S/2²⁰ grid over ``SodiumStream``).
    @Test("Audit 3: noise of zero-input releases has variance (zS)² (χ² at 99.9%), is normal (KS at 99.9%), and releases are independent")
    func noiseIsCalibrated() {
        let z = 1.1, S = 0.8, sigma = z * S
        let count = 200_000
        var random = SodiumStream()
        let zeros = [Float](repeating: 0, count: count)
        let first = QuantisedRelease.noised(zeros, clipNorm: S, noiseMultiplier: z, random: &random).map(Double.init)
        let second = QuantisedRelease.noised(zeros, clipNorm: S, noiseMultiplier: z, random: &random).map(Double.init)
        let n = Double(count)
        let mean = first.reduce(0, +) / n
        let variance = first.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)
        // (n−1)s²/σ² ~ χ²(n−1) ≈ N(n−1, 2(n−1)) at this n: two-sided 99.9 % → |Z| < 3.29.
        let chiSquare = (n - 1) * variance / (sigma * sigma)
        let zVariance = (chiSquare - (n - 1)) / (2 * (n - 1)).squareRoot()
        #expect(abs(zVariance) < 3.29, "variance \(variance) vs \((sigma * sigma)), Z = \(zVariance)")
        #expect(abs(mean) / (sigma / n.squareRoot()) < 3.29, "mean \(mean)")
        // Kolmogorov–Smirnov against N(0, σ²): D·√n < 1.949 at 99.9 %.
        let sorted = first.sorted()
        var d = 0.0
        for (index, value) in sorted.enumerated() {
            let cdf = 0.5 * erfc(-value / (sigma * 2.0.squareRoot()))
            d = max(d, abs(cdf - Double(index) / n), abs(cdf - Double(index + 1) / n))
        }
        #expect(d * n.squareRoot() < 1.949, "KS statistic \(d * n.squareRoot())")
        // Independence of two releases: the correlation of their noise is N(0, 1/n).
        let covariance = zip(first, second).reduce(0) { $0 + $1.0 * $1.1 } / n
        let correlation = covariance / (sigma * sigma)
        #expect(abs(correlation) * n.squareRoot() < 3.29, "correlation \(correlation)")
        #expect(first != second)
    }

    /// Audit 3 (grid): every released value is an integer multiple of S/2²⁰, whatever the input — the
    /// release is a function of the quantised sum and integer noise only.
    @Test("Audit 3: released values lie on the fixed grid S/2²⁰ whatever the input")
    func noiseIsOnTheGrid() {
        let grid = QuantisedRelease.step(clipNorm: 1)
        #expect(grid == 0x1.0p-20)
        var random = SodiumStream()
        let released = QuantisedRelease.noised([0.123456789, -3.3, 1e-9, 2.5], clipNorm: 1, noiseMultiplier: 0.9,
                                               random: &random)
        for value in released {
            let steps = Double(value) / grid
            #expect(steps == steps.rounded(), "\(value) is not on the grid")
        }
    }

    // MARK: 4. Sampling

    /// Audit 4: the agent's sampling draw (``LocalTraining/isSampled(_:random:)`` over ``SodiumRandom``,
    /// as ``StoreRoundWorker`` uses it) includes each user independently with probability q: the count
    /// passes a binomial test at 99.9 %, and two draws from the CSPRNG differ (no fixed seed).
    @Test("Audit 4: sampling is Poisson at rate q (binomial test at 99.9%) and comes from the CSPRNG")
    func samplingIsPoisson() {
        let q = 0.013, n = 300_000
        let training = LocalTraining(hyperparameters: RoundHyperparameters(
            samplingRate: q, clipNorm: 1, noiseMultiplier: 1, learningRate: 1, localSteps: 1, sequenceLength: 10))
        let user = EventSequence(categories: [1, 2, 3])
        var random = SodiumRandom()
        var first: [Bool] = [], second: [Bool] = []
        for _ in 0..<n { first.append(training.isSampled(user, random: &random)) }
        for _ in 0..<n { second.append(training.isSampled(user, random: &random)) }
        for draw in [first, second] {
            let k = Double(draw.filter { $0 }.count)
            let zScore = (k - Double(n) * q) / (Double(n) * q * (1 - q)).squareRoot()
            #expect(abs(zScore) < 3.29, "sampled \(k) of \(n), Z = \(zScore)")
        }
        #expect(first != second, "two draws from the CSPRNG must differ")
        // Pairs of consecutive users are independent: P(both) ≈ q².
        let both = Double(zip(first.dropLast(), first.dropFirst()).filter { $0 && $1 }.count)
        let expected = Double(n - 1) * q * q
        #expect(abs(both - expected) / (expected * (1 - q * q)).squareRoot() < 3.29)
        // A user with fewer than two events has no transition to train on and is never sampled.
        #expect(!training.isSampled(EventSequence(categories: [4]), random: &random))
    }
}
