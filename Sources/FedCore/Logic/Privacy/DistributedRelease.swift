import FedModel
import Foundation

/// The update an agent releases into secure aggregation, with distributed discrete Gaussian noise
/// (Kairouz, Liu, Steinke 2021, "The Distributed Discrete Gaussian Mechanism for Federated Learning
/// with Secure Aggregation"). The aggregator sees only the sum of the agents' vectors modulo 2³², so
/// each agent adds only its share of the noise: N_ℤ(0, σ²/t) on the grid, t being the secure-
/// aggregation threshold (the fewest agents whose vectors an unmasked sum can hold), and every sum the
/// aggregator can learn carries at least σ² = (zS/step)². The mechanism charged is the aggregate one:
/// one Poisson-subsampled discrete Gaussian over all agents' users, at the accounted multiplier below.
///
/// Encoding: the agent's clipped sum, divided by the step S/2^bits, is rounded to an integer by
/// unbiased randomized rounding, noised, and sent as a 32-bit two's-complement word. `bits` is chosen
/// so that the largest possible sum — `maxUsers` clipped contributions of at most S per coordinate,
/// one rounding step per agent, and 12 standard deviations of noise — stays below 2³¹ steps, so the
/// modular sum never wraps (the noise tail beyond 12σ has probability < 10⁻³²).
package struct DistributedRelease: Sendable, Equatable {
    package var clipNorm: Double
    /// z of the aggregate: the noise of any sum the aggregator can unmask, per unit of S.
    package var noiseMultiplier: Double
    /// The secure-aggregation threshold t: an unmasked sum holds at least t agents' noise.
    package var threshold: Int
    /// Grid steps per clip norm, as a power of two.
    package var bits: Int

    package enum Failure: Error, Equatable, CustomStringConvertible {
        /// Too many users per round for 32-bit words at a useful resolution.
        case tooManyUsers(Int)
        case badParameters(String)

        package var description: String {
            switch self {
            case let .tooManyUsers(count):
                "\(count) users per round leave fewer than \(DistributedRelease.minimumBits) bits of resolution in 32-bit sums"
            case let .badParameters(reason): "distributed release: \(reason)"
            }
        }
    }

    /// Below this, rounding would cost more than noise for a medium model.
    package static let minimumBits = 8
    /// The grid never gets finer than the agents' own quantised releases (``QuantisedRelease/bits``).
    package static let maximumBits = QuantisedRelease.bits

    package init(clipNorm: Double, noiseMultiplier z: Double, threshold: Int, maxUsers: Int) throws(Failure) {
        guard clipNorm > 0, clipNorm.isFinite else { throw .badParameters("clip norm must be positive") }
        guard z >= 0, z.isFinite else { throw .badParameters("noise multiplier must be finite and ≥ 0") }
        guard threshold >= 1 else { throw .badParameters("threshold must be at least 1") }
        guard maxUsers >= 0 else { throw .badParameters("maxUsers must be ≥ 0") }
        // Largest |coordinate| of a sum, in units of S: users + one rounding step per agent (≤ users + t
        // agents is not known here; a step per user bounds it) + 12σ.
        let extent = 2 * Double(maxUsers) + 12 * z + 1
        let bits = Int((31 - log2(extent)).rounded(.down))
        guard bits >= Self.minimumBits else { throw .tooManyUsers(maxUsers) }
        (self.clipNorm, self.noiseMultiplier, self.threshold) = (clipNorm, z, threshold)
        self.bits = min(bits, Self.maximumBits)
    }

    /// A release on a grid of `bits` bits per clip norm (announced by the aggregator, which chose it with
    /// ``bits(maxUsers:noiseMultiplier:)``).
    package init(clipNorm: Double, noiseMultiplier z: Double, threshold: Int, bits: Int) throws(Failure) {
        guard clipNorm > 0, clipNorm.isFinite else { throw .badParameters("clip norm must be positive") }
        guard z >= 0, z.isFinite else { throw .badParameters("noise multiplier must be finite and ≥ 0") }
        guard threshold >= 1 else { throw .badParameters("threshold must be at least 1") }
        guard (Self.minimumBits...Self.maximumBits).contains(bits) else {
            throw .badParameters("\(bits) bits per clip norm is outside \(Self.minimumBits)...\(Self.maximumBits)")
        }
        (self.clipNorm, self.noiseMultiplier, self.threshold, self.bits) = (clipNorm, z, threshold, bits)
    }

    /// The finest grid on which `maxUsers` users' clipped contributions and the noise cannot wrap 32 bits.
    package static func bits(maxUsers: Int, noiseMultiplier z: Double) throws(Failure) -> Int {
        try DistributedRelease(clipNorm: 1, noiseMultiplier: z, threshold: 1, maxUsers: maxUsers).bits
    }

    package var step: Double { clipNorm / Double(1 << bits) }

    /// Each agent's noise variance in grid steps: ⌈σ²/t⌉ with σ = zS/step, so t agents give at least σ².
    package var agentVariance: UInt128 {
        let sigma = noiseMultiplier * Double(1 << bits)
        return UInt128((sigma * sigma / Double(threshold)).rounded(.up))
    }

    /// The variance (in steps²) that the fewest agents an unmasked sum can hold carry together.
    package var sumVariance: Double { Double(threshold) * Double(agentVariance) }

    /// The aggregate's noise multiplier as charged: √(t·variance) against the sensitivity with the
    /// rounding's extra √d steps (as ``QuantisedRelease/accountedNoiseMultiplier(_:clipNorm:dimension:)``).
    package func accountedNoiseMultiplier(dimension: Int) -> Double {
        sumVariance.squareRoot() / (Double(1 << bits) + Double(dimension).squareRoot())
    }

    /// One agent's own share as a noise multiplier (what an aggregator that could isolate this agent's
    /// vector would see): √variance against the same sensitivity. The agent's floor applies to it.
    package func agentNoiseMultiplier(dimension: Int) -> Double {
        Double(agentVariance).squareRoot() / (Double(1 << bits) + Double(dimension).squareRoot())
    }

    /// τ of Kairouz–Liu–Steinke (Prop. 14): how far the sum of t discrete Gaussians of this variance is
    /// from one discrete Gaussian, 10·Σ_{k=1}^{t−1} e^{−2π²σ²_agent·k/(k+1)}. It enters the RDP bound as
    /// an additive τ·d; at the variances FedDrift uses (σ_agent ≫ 1 step) it underflows to 0.
    package var tau: Double {
        let variance = Double(agentVariance)
        return 10 * (1..<max(threshold, 1)).reduce(0.0) { total, k in
            total + exp(-2 * Double.pi * Double.pi * variance * Double(k) / Double(k + 1))
        }
    }

    /// The agent's vector for secure aggregation: `values` / step, randomized rounding, plus
    /// N_ℤ(0, ``agentVariance``) per coordinate, as 32-bit two's-complement words.
    package func encode<G: RandomNumberGenerator>(_ values: [Float], random: inout G) -> [UInt32] {
        let inverse = Double(1 << bits) / clipNorm
        let variance = agentVariance
        var sampler = DiscreteGaussian(generator: random)
        defer { random = sampler.generator }
        let t = DiscreteGaussian<G>.integerSquareRoot(variance) + 1
        return values.map { value in
            // A non-finite or absurd value (never produced by clipping) becomes 0 or the edge, not a trap.
            let raw = Double(value) * inverse
            let scaled = raw.isFinite ? min(max(raw, -0x1p40), 0x1p40) : 0
            let integer: Double
            if variance >= 1 {
                integer = QuantisedRelease.roundedWithNoise(scaled, variance: variance, scale: t, sampler: &sampler)
            } else {
                // NON-PRIVATE federations: rounding only.
                let floor = scaled.rounded(.down)
                integer = floor + (Double(sampler.generator.next() >> 11) * 0x1.0p-53 < scaled - floor ? 1 : 0)
            }
            // |integer| < 2³¹ by the choice of bits (and < 2⁵³, so the Double is exact).
            return UInt32(truncatingIfNeeded: Int64(integer))
        }
    }

    /// The sum's words (mod 2³²) back to floats: two's complement, times the step.
    package func decode(_ words: [UInt32]) -> [Float] {
        let step = self.step
        return words.map { Float(Double(Int32(bitPattern: $0)) * step) }
    }
}
