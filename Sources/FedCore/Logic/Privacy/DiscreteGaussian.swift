import FedModel
import Foundation

/// Exact samples of the discrete Gaussian N_ℤ(0, σ²) — P[X = x] ∝ exp(−x²/(2σ²)) on the integers —
/// by Canonne, Kamath and Steinke (2020, "The Discrete Gaussian for Differential Privacy", Algorithms
/// 1–3): Bernoulli(exp(−γ)) by Taylor-series coin flips, a discrete Laplace proposal, and rejection.
/// Every step is integer arithmetic on 128-bit numbers over uniform integers from the generator (the
/// CSPRNG in production): there is no floating point anywhere on the sampling path, so the output's
/// distribution is exactly the one accounted, unlike a rounded floating-point Gaussian (Mironov 2012).
///
/// σ² is an integer (callers round it up: more noise than accounted, never less). A proposal whose
/// 128-bit arithmetic would overflow (|x| beyond ≈ 2⁴⁰·σ⁻¹·…, probability below 2⁻⁸⁰) is rejected and drawn
/// again, which changes the distribution by less than that probability.
package struct DiscreteGaussian<Generator: RandomNumberGenerator> {
    package var generator: Generator

    @inlinable package init(generator: Generator) { self.generator = generator }

    /// A uniform integer in [0, n), n > 0, without bias: Lemire's multiply-and-reject below 2⁶⁴, masked
    /// rejection above (concrete arithmetic: this runs for every noised coordinate).
    @inlinable package mutating func uniform(below n: UInt128) -> UInt128 {
        if n <= UInt128(UInt64.max) {
            let bound = UInt64(truncatingIfNeeded: n)
            var product = generator.next().multipliedFullWidth(by: bound)
            if product.low < bound {  // rarely: only then is the (slow) exact threshold needed
                let threshold = (0 &- bound) % bound
                while product.low < threshold { product = generator.next().multipliedFullWidth(by: bound) }
            }
            return UInt128(product.high)
        }
        let mask = UInt128.max >> n.leadingZeroBitCount
        while true {
            let draw = (UInt128(generator.next()) << 64 | UInt128(generator.next())) & mask
            if draw < n { return draw }
        }
    }

    /// Bernoulli(numerator / denominator), 0 ≤ numerator ≤ denominator, denominator > 0.
    @inlinable package mutating func bernoulli(_ numerator: UInt128, _ denominator: UInt128) -> Bool {
        uniform(below: denominator) < numerator
    }

    /// Bernoulli(exp(−numerator / denominator)) for numerator / denominator ∈ [0, 1] (CKS Algorithm 1:
    /// flip Bernoulli(γ/k) for k = 1, 2, … until one fails; the last k is odd with probability e^−γ).
    @inlinable package mutating func bernoulliExpMinusUnit(_ numerator: UInt128, _ denominator: UInt128) -> Bool {
        var k: UInt128 = 1
        while true {
            let (scaled, overflow) = denominator.multipliedReportingOverflow(by: k)
            if overflow || !bernoulli(numerator, scaled) { break }
            k += 1
        }
        return k % 2 == 1
    }

    /// Bernoulli(exp(−numerator / denominator)) for any non-negative ratio: e^−γ = (e^−1)^⌊γ⌋ · e^−(γ−⌊γ⌋).
    @inlinable package mutating func bernoulliExpMinus(_ numerator: UInt128, _ denominator: UInt128) -> Bool {
        var remaining = numerator
        while remaining > denominator {
            if !bernoulliExpMinusUnit(1, 1) { return false }
            remaining -= denominator
        }
        return bernoulliExpMinusUnit(remaining, denominator)
    }

    /// The discrete Laplace distribution with scale t: P[X = x] ∝ exp(−|x|/t) (CKS Algorithm 2).
    @inlinable package mutating func discreteLaplace(scale t: UInt128) -> Int128? {
        while true {
            let u = uniform(below: t)
            guard bernoulliExpMinus(u, t) else { continue }
            var v: UInt128 = 0
            while bernoulliExpMinusUnit(1, 1) { v += 1 }
            let (tv, overflow) = t.multipliedReportingOverflow(by: v)
            guard !overflow, tv < UInt128(Int128.max) - u else { return nil }
            let x = u + tv
            let negative = bernoulli(1, 2)
            if negative && x == 0 { continue }
            return negative ? -Int128(x) : Int128(x)
        }
    }

    /// One sample of N_ℤ(0, σ²) for integer σ² ≥ 1 (CKS Algorithm 3: discrete Laplace proposals with
    /// t = ⌊σ⌋ + 1, accepted with probability exp(−(|y| − σ²/t)² / (2σ²))).
    @inlinable package mutating func sample(variance sigma2: UInt128) -> Int128 {
        sample(variance: sigma2, scale: Self.integerSquareRoot(sigma2) + 1)
    }

    /// ``sample(variance:)`` with the proposal's scale t = ⌊σ⌋ + 1 computed once by the caller.
    @inlinable package mutating func sample(variance sigma2: UInt128, scale t: UInt128) -> Int128 {
        precondition(sigma2 >= 1)
        while true {
            guard let y = discreteLaplace(scale: t) else { continue }
            // (|y| − σ²/t)² / (2σ²) = (|y|·t − σ²)² / (2·σ²·t²)
            let (yt, o1) = y.magnitude.multipliedReportingOverflow(by: t)
            if o1 { continue }
            let difference = yt > sigma2 ? yt - sigma2 : sigma2 - yt
            let (numerator, o2) = difference.multipliedReportingOverflow(by: difference)
            let (tt, o3) = t.multipliedReportingOverflow(by: t)
            let (denominator, o4) = (2 * sigma2).multipliedReportingOverflow(by: tt)
            if o2 || o3 || o4 { continue }
            if bernoulliExpMinus(numerator, denominator) { return y }
        }
    }

    /// ⌊√n⌋ by Newton's method on integers.
    @inlinable package static func integerSquareRoot(_ n: UInt128) -> UInt128 {
        guard n > 1 else { return n }
        var x = UInt128(Double(n).squareRoot())
        while x * x > n { x -= 1 }
        while (x + 1) * (x + 1) <= n { x += 1 }
        return x
    }
}

/// The model update's exact mechanism: the clipped sum is quantised to the integer grid of step
/// γ = S / 2^bits by unbiased randomized rounding, and N_ℤ(0, σ²) with σ = z·S/γ is added to every
/// coordinate (Kairouz, Liu, Steinke 2021, "The Distributed Discrete Gaussian Mechanism", whose
/// quantisation this follows). One user moves the sum by at most S; under the rounding's natural
/// coupling each coordinate moves by less than one grid step more, so the L2 sensitivity on the grid
/// is at most S/γ + √d, and the release is charged as a Gaussian mechanism of noise multiplier
/// z_eff = σ / (S/γ + √d) = z / (1 + γ√d / S) (``accountedNoiseMultiplier(_:clipNorm:dimension:)``),
/// at integer Rényi orders only (``RDP/integerOrdersOnly(_:)``).
package enum QuantisedRelease {
    /// Grid steps per clip norm: 2²⁰, so the rounding costs ≤ 0.1 % of the noise for a 900k-parameter model.
    @usableFromInline package static let bits = 20

    @inlinable package static func step(clipNorm: Double) -> Double { clipNorm / Double(1 << bits) }

    /// σ² in grid units, rounded up to an integer (more noise than accounted, never less).
    @inlinable package static func variance(noiseMultiplier z: Double, clipNorm: Double) -> UInt128 {
        let sigma = z * clipNorm / step(clipNorm: clipNorm)
        return UInt128((sigma * sigma).rounded(.up))
    }

    /// What the ledger charges: the noise multiplier with the rounding's extra sensitivity.
    package static func accountedNoiseMultiplier(_ z: Double, clipNorm: Double = 1, dimension: Int) -> Double {
        z / (1 + step(clipNorm: clipNorm) * Double(dimension).squareRoot() / clipNorm)
    }

    /// A few sums, each of whose per-user contributions is at most `scales[i]` in absolute value: each sum
    /// divided by its scale is quantised to the grid 2^−bits by randomized rounding, gets N_ℤ(0, (z·2^bits)²),
    /// and is multiplied back. k sums have per-user L2 sensitivity √k in scaled units, √k·(2^bits + 1) on
    /// the grid, so the release is charged at ``accountedSumsNoiseMultiplier(_:count:)``.
    @inlinable package static func noisedSums<G: RandomNumberGenerator>(_ sums: [Double], scales: [Double], noiseMultiplier z: Double,
                                                             random: inout G) -> [Double] {
        precondition(sums.count == scales.count)
        guard z > 0 else { return sums }
        let grid = Double(1 << bits)
        let sigma = z * grid
        let sigma2 = UInt128((sigma * sigma).rounded(.up))
        var sampler = DiscreteGaussian(generator: random)
        defer { random = sampler.generator }
        let t = DiscreteGaussian<G>.integerSquareRoot(sigma2) + 1
        return zip(sums, scales).map { sum, scale in
            roundedWithNoise(sum / scale * grid, variance: sigma2, scale: t, sampler: &sampler) / grid * scale
        }
    }

    /// The noise multiplier charged for `count` sums released by ``noisedSums(_:scales:noiseMultiplier:random:)``
    /// with multiplier `z` each.
    package static func accountedSumsNoiseMultiplier(_ z: Double, count: Int) -> Double {
        z / Double(count).squareRoot() / (1 + 1 / Double(1 << bits))
    }

    /// `values` quantised to the grid by randomized rounding, plus N_ℤ(0, σ²) per coordinate, as float32
    /// multiples of the step (the conversion is post-processing). `noiseScale` only for audit controls.
    @inlinable package static func noised<G: RandomNumberGenerator>(_ values: [Float], clipNorm: Double, noiseMultiplier z: Double,
                                                         noiseScale: Double = 1, random: inout G) -> [Float] {
        guard z > 0 else { return values }
        let gamma = step(clipNorm: clipNorm)
        let sigma2 = variance(noiseMultiplier: z * noiseScale, clipNorm: clipNorm)
        var sampler = DiscreteGaussian(generator: random)
        defer { random = sampler.generator }
        let t = DiscreteGaussian<G>.integerSquareRoot(sigma2) + 1
        return values.map { value in
            Float(roundedWithNoise(Double(value) / gamma, variance: sigma2, scale: t, sampler: &sampler) * gamma)
        }
    }

    /// `scaled` (in grid steps) rounded to an integer by unbiased randomized rounding, plus one
    /// N_ℤ(0, σ²) sample: the one step every release applies to each coordinate.
    @inlinable static func roundedWithNoise<G: RandomNumberGenerator>(_ scaled: Double, variance sigma2: UInt128,
                                                                      scale t: UInt128,
                                                                      sampler: inout DiscreteGaussian<G>) -> Double {
        let floor = scaled.rounded(.down)
        let up = Double(sampler.generator.next() >> 11) * 0x1.0p-53 < scaled - floor
        return floor + (up ? 1 : 0) + Double(sampler.sample(variance: sigma2, scale: t))
    }
}
