@testable import FedLogic
@testable import FedModel
import Foundation
import Testing

@Suite("Discrete Gaussian: exact sampler and quantised release")
struct DiscreteGaussianTests {
    /// χ² of `samples` against N_ℤ(0, σ²): one bin per integer with at least 20 expected draws, the two
    /// tails beyond them pooled. Returns the statistic and the 99.9 % critical value (Wilson–Hilferty).
    static func chiSquare(_ samples: [Int], variance: Double) -> (statistic: Double, critical: Double, bins: Int) {
        let sigma = variance.squareRoot()
        let limit = Int((14 * sigma).rounded(.up)) + 2
        let weights = (-limit...limit).map { exp(-Double($0 * $0) / (2 * variance)) }
        let total = weights.reduce(0, +)
        let n = Double(samples.count)
        var counts = [Int: Int]()
        for x in samples { counts[x, default: 0] += 1 }
        // Central integers with enough expected mass; everything else in two tail bins.
        let central = (-limit...limit).filter { n * weights[$0 + limit] / total >= 20 }
        let low = central.min() ?? 0, high = central.max() ?? 0
        var expected: [Double] = [], observed: [Double] = []
        for x in low...high {
            expected.append(n * weights[x + limit] / total)
            observed.append(Double(counts[x] ?? 0))
        }
        let lowTail = (-limit..<low).reduce(0.0) { $0 + weights[$1 + limit] } / total * n
        let highTail = ((high + 1)...limit).reduce(0.0) { $0 + weights[$1 + limit] } / total * n
        expected += [lowTail, highTail]
        observed.append(Double(samples.filter { $0 < low }.count))
        observed.append(Double(samples.filter { $0 > high }.count))
        let statistic = zip(observed, expected).reduce(0.0) { sum, pair in
            pair.1 > 0 ? sum + (pair.0 - pair.1) * (pair.0 - pair.1) / pair.1 : sum + (pair.0 > 0 ? .infinity : 0)
        }
        let df = Double(expected.count - 1)
        let z = 3.0902  // 99.9 %
        let critical = df * pow(1 - 2 / (9 * df) + z * (2 / (9 * df)).squareRoot(), 3)
        return (statistic, critical, expected.count)
    }

    @Test("The sampler's frequencies match the discrete Gaussian pmf (χ² over the centre and both tails, 99.9 %)",
          arguments: [1, 7, 50, 3_000])
    func matchesPmf(variance: Int) {
        var sampler = DiscreteGaussian(generator: SplitMix64(seed: UInt64(variance) * 7919))
        let samples = (0..<200_000).map { _ in Int(sampler.sample(variance: UInt128(variance))) }
        let test = Self.chiSquare(samples, variance: Double(variance))
        #expect(test.statistic < test.critical, "χ² \(test.statistic) ≥ \(test.critical) over \(test.bins) bins")
        let mean = Double(samples.reduce(0, +)) / Double(samples.count)
        #expect(abs(mean) < 5 * (Double(variance) / Double(samples.count)).squareRoot())
    }

    /// The control that must fail: a floating-point Gaussian rounded to the integers is not the discrete
    /// Gaussian (at σ = 1, P[0] is 0.383 against 0.399), and the same test rejects it.
    @Test("Control: a rounded floating-point Gaussian fails the same χ² test")
    func roundedContinuousFails() {
        var random = SplitMix64(seed: 5)
        let samples = (0..<200_000).map { _ in Int(random.nextGaussian().rounded()) }
        let test = Self.chiSquare(samples, variance: 1)
        #expect(test.statistic > 2 * test.critical, "χ² \(test.statistic) vs critical \(test.critical)")
    }

    @Test("Bernoulli(exp(−γ)) is exact: frequencies within 4 s.e. of e^−γ for γ = 0, ½, 1, 7/3")
    func bernoulliExp() {
        var sampler = DiscreteGaussian(generator: SplitMix64(seed: 11))
        for (numerator, denominator) in [(0, 1), (1, 2), (1, 1), (7, 3)] as [(UInt128, UInt128)] {
            let n = 100_000
            let hits = (0..<n).filter { _ in sampler.bernoulliExpMinus(numerator, denominator) }.count
            let p = exp(-Double(numerator) / Double(denominator))
            #expect(abs(Double(hits) / Double(n) - p) < 4 * (p * (1 - p) / Double(n)).squareRoot() + 1e-12,
                    "γ = \(numerator)/\(denominator): \(hits) of \(n)")
        }
    }

    @Test("The quantised release is unbiased, on the S/2²⁰ grid, with variance (zS)²; accounting charges the rounding")
    func quantisedRelease() {
        var random = SplitMix64(seed: 3)
        let values = (0..<50_000).map { Float($0 % 7) * 0.01 - 0.03 }
        let noised = QuantisedRelease.noised(values, clipNorm: 0.5, noiseMultiplier: 1.5, random: &random)
        let differences = zip(noised, values).map { Double($0) - Double($1) }
        let mean = differences.reduce(0, +) / Double(differences.count)
        let variance = differences.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(differences.count - 1)
        #expect(abs(mean) < 4 * 0.75 / Double(differences.count).squareRoot())
        #expect(abs(variance / (0.75 * 0.75) - 1) < 0.03, "variance \(variance)")
        let step = QuantisedRelease.step(clipNorm: 0.5)
        #expect(noised.allSatisfy { (Double($0) / step).rounded() == Double($0) / step }, "every value on the grid")
        // z_eff = z / (1 + γ√d/S): a 900k-parameter model loses < 0.1 %.
        #expect(abs(QuantisedRelease.accountedNoiseMultiplier(1, dimension: 1 << 20) - 1 / (1 + 1024.0 / 1_048_576)) < 1e-12)
        #expect(QuantisedRelease.noised(values, clipNorm: 1, noiseMultiplier: 0, random: &random) == values)
    }
}
