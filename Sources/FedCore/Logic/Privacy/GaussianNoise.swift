import FedModel
import Foundation

/// Gaussian noise for DP releases, from a cryptographically secure generator in production
/// (``SodiumRandom``; seeded generators only in tests).
///
/// Samples: Box–Muller on two 53-bit uniforms (u₁ ∈ (0, 1], u₂ ∈ [0, 1)), in double precision.
/// Floating-point attacks (Mironov 2012): the set of doubles `x + noise` can reach depends on x
/// through rounding, which can leak x when noise has finer resolution than the output grid allows for.
/// Every noised value is therefore *snapped*: computed in double precision, then rounded to a fixed
/// grid Λ = 2^(⌈log₂ σ⌉ − 20), independent of x and at least 2²⁰ times coarser than the sampler's
/// resolution at σ, so every grid point near x is reachable from every nearby input and the release is
/// a function of the snapped value only (the float32 conversion afterwards is post-processing).
package struct GaussianNoise<Generator: RandomNumberGenerator> {
    package var generator: Generator
    private var spare: Double?

    package init(generator: Generator) { self.generator = generator }

    /// One N(0, 1) sample.
    package mutating func standardNormal() -> Double {
        if let spare {
            self.spare = nil
            return spare
        }
        let u1 = Double(generator.next() >> 11 &+ 1) * 0x1.0p-53  // (0, 1]
        let u2 = Double(generator.next() >> 11) * 0x1.0p-53       // [0, 1)
        let radius = (-2 * Foundation.log(u1)).squareRoot()
        spare = radius * Foundation.sin(2 * .pi * u2)
        return radius * Foundation.cos(2 * .pi * u2)
    }

    /// The snapping grid for noise of standard deviation `sigma`.
    package static func grid(sigma: Double) -> Double {
        precondition(sigma > 0)
        return Foundation.exp2(Foundation.ceil(Foundation.log2(sigma)) - 20)
    }

    /// `values` + N(0, σ²) per coordinate, snapped to ``grid(sigma:)``, as float32.
    package mutating func noised(_ values: [Float], sigma: Double) -> [Float] {
        guard sigma > 0 else { return values }
        let step = Self.grid(sigma: sigma)
        return values.map { value in
            let noisy = Double(value) + sigma * standardNormal()
            return Float((noisy / step).rounded() * step)
        }
    }

    /// `count` + N(0, σ²), snapped (for noisy counts and histogram bins).
    package mutating func noised(count: Double, sigma: Double) -> Double {
        guard sigma > 0 else { return count }
        let step = Self.grid(sigma: sigma)
        return ((count + sigma * standardNormal()) / step).rounded() * step
    }
}
