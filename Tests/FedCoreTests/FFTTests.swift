@testable import FedLogic
@testable import FedModel
import Foundation
import Testing

@Suite("FFT convolutions and PLD composition")
struct FFTTests {
    /// Σ_j a_j b_{k−j}, directly.
    static func direct(_ a: [Double], _ b: [Double]) -> [Double] {
        var c = [Double](repeating: 0, count: a.count + b.count - 1)
        for i in a.indices { for j in b.indices { c[i + j] += a[i] * b[j] } }
        return c
    }

    static func pmf(_ count: Int, seed: UInt64) -> [Double] {
        var generator = SplitMix64(seed: seed)
        let raw = (0..<count).map { _ in Double(generator.next() % 1000) + 1 }
        let total = raw.reduce(0, +)
        return raw.map { $0 / total }
    }

    @Test("FFT convolution equals the direct sum to 1e-15 absolute, for lengths that are and are not powers of two")
    func convolution() {
        for (m, n) in [(1, 1), (3, 5), (64, 64), (100, 37), (513, 250)] {
            let a = Self.pmf(m, seed: UInt64(m)), b = Self.pmf(n, seed: UInt64(n) + 99)
            let fast = FFT.convolve(a, b), slow = Self.direct(a, b)
            #expect(fast.count == slow.count)
            #expect(zip(fast, slow).allSatisfy { abs($0 - $1) <= 1e-15 }, "\(m)×\(n)")
        }
    }

    @Test("The t-fold self-convolution equals repeated direct convolution (no wrap when the size holds it)")
    func selfConvolution() {
        let a = Self.pmf(40, seed: 7)
        var slow = a
        for _ in 1..<6 { slow = Self.direct(slow, a) }
        let fast = FFT.selfConvolve(a, times: 6, size: FFT.size(atLeast: slow.count))
        #expect(zip(fast, slow).allSatisfy { abs($0 - $1) <= 1e-15 })
        // Control: too small a cyclic size wraps mass around, and the comparison sees it.
        let wrapped = FFT.selfConvolve(a, times: 6, size: 64)
        #expect(zip(wrapped, slow).contains { abs($0 - $1) > 1e-6 })
    }

    @Test("Self-composing a PLD equals composing it with itself; the Chernoff window drops at most its tail mass")
    func composition() throws {
        let one = try PrivacyLossDistribution.subsampledGaussian(samplingRate: 0.2, noiseMultiplier: 2)
        let thrice = try one.selfComposed(3)
        let chained = try one.composed(with: one).composed(with: one)
        for delta in [1e-3, 1e-5, 1e-7] {
            #expect(abs(thrice.epsilon(delta: delta) - chained.epsilon(delta: delta)) <= 1e-9)
        }
        let mass = thrice.remove.probabilities.reduce(0, +) + thrice.remove.infinityMass
        #expect(abs(mass - 1) <= 1e-9)
    }
}
