import Foundation

#if canImport(Glibc)
import Glibc
import FedModel
#endif

/// Rényi differential privacy of FedDrift's mechanisms, composition, conversion to (ε, δ) and
/// calibration. Neighbouring datasets differ by adding or removing one user (all of a user's events).
///
/// - Poisson-subsampled Gaussian (Mironov, Talwar, Zhang 2019): each round includes each user with
///   probability q, clips each user's update to L2 norm S and adds N(0, z²S²) to every coordinate of
///   the sum. Integer orders use the exact binomial expansion; fractional orders the series of the
///   paper's Sec. 3.3, either with the generalized binomial coefficients' signs (``FractionalSeries/exact``,
///   FedDrift's choice: it equals the Rényi moment integral) or with every term taken as positive
///   (``FractionalSeries/dpAccounting``, Google dp-accounting 0.6.0's upper bound).
/// - Gaussian mechanism of L2 sensitivity Δ and noise σ (drift-score histograms): α·Δ²/(2σ²).
/// - Composition: RDP adds up per order, over rounds and across mechanisms.
/// - Conversion: ε = min over orders of r + log1p(−1/α) − log(δ·α)/(α − 1) (Canonne, Kamath, Steinke
///   2020; Asoodeh et al. 2020), as dp-accounting's `RdpAccountant`.
package enum RDP {
    /// How fractional orders are computed (integer orders are the same in both).
    package enum FractionalSeries: String, Sendable, Codable {
        /// Signed generalized binomial terms: the exact value (matches numerical integration).
        case exact
        /// Every term added as positive, as dp-accounting 0.6.0 does: an upper bound.
        case dpAccounting = "dp_accounting"
    }

    /// dp-accounting's default orders: 1.1 … 10.9 by 0.1, 11 … 63, 128, 256, 512, 1024.
    package static let defaultOrders: [Double] = {
        let fractional: [Double] = (1...99).map { (x: Int) -> Double in 1.0 + Double(x) / 10.0 }
        let integers: [Double] = (11...63).map { (x: Int) -> Double in Double(x) }
        return fractional + integers + [128, 256, 512, 1024]
    }()

    /// RDP at `order` of one round of the Poisson-subsampled Gaussian mechanism (sensitivity 1,
    /// noise multiplier `z`). `+∞` when the fractional series does not converge within 1000 terms
    /// (that order is then useless, as in dp-accounting).
    package static func subsampledGaussian(q: Double, noiseMultiplier z: Double, order alpha: Double,
                                           series: FractionalSeries = .exact) -> Double {
        precondition((0...1).contains(q) && z >= 0 && alpha > 1)
        if q == 0 { return 0 }
        if z == 0 || alpha.isInfinite { return .infinity }
        if q == 1 { return alpha / (2 * z * z) }
        let logA = alpha == alpha.rounded()
            ? logAInteger(q: q, z: z, alpha: Int(alpha)) : logAFractional(q: q, z: z, alpha: alpha, series: series)
        return logA / (alpha - 1)
    }

    /// RDP of the Gaussian mechanism with noise standard deviation `sigma` per unit of L2 sensitivity.
    package static func gaussian(noiseMultiplier sigma: Double, order alpha: Double) -> Double {
        sigma == 0 ? .infinity : alpha / (2 * sigma * sigma)
    }

    /// `curve` (over ``defaultOrders``) with every fractional order set to +∞, so that only integer
    /// orders convert to ε: the discrete Gaussian's subsampled bound is proved at integer orders.
    package static func integerOrdersOnly(_ curve: [Double], orders: [Double] = defaultOrders) -> [Double] {
        zip(curve, orders).map { value, order in order == order.rounded() ? value : .infinity }
    }

    /// One round's RDP at every order of `orders`.
    package static func subsampledGaussian(q: Double, noiseMultiplier z: Double, orders: [Double] = defaultOrders,
                                           series: FractionalSeries = .exact) -> [Double] {
        orders.map { subsampledGaussian(q: q, noiseMultiplier: z, order: $0, series: series) }
    }

    /// (ε, optimal order) for total RDP `rdp` at `orders` and `delta` (dp-accounting's conversion).
    package static func epsilon(rdp: [Double], orders: [Double] = defaultOrders, delta: Double)
        -> (epsilon: Double, order: Double)
    {
        precondition(rdp.count == orders.count && delta >= 0 && delta < 1)
        if delta == 0 { return rdp.allSatisfy { $0 == 0 } ? (0, 0) : (.infinity, 0) }
        var best = Double.infinity, bestOrder = orders.first ?? 0
        for (r, alpha) in zip(rdp, orders) {
            let candidate: Double
            if r < 0 || delta * delta + expm1(-r) > 0 {
                candidate = 0
            } else if alpha > 1.01 && r.isFinite {
                candidate = r + log1p(-1 / alpha) - log(delta * alpha) / (alpha - 1)
            } else {
                candidate = .infinity
            }
            if candidate < best {
                best = candidate
                bestOrder = alpha
            }
        }
        return (max(0, best), bestOrder)
    }

    /// The classic conversion (Mironov 2017, Prop. 3): min over orders of r + log(1/δ)/(α − 1).
    package static func epsilonClassic(rdp: [Double], orders: [Double] = defaultOrders, delta: Double)
        -> (epsilon: Double, order: Double)
    {
        var best = Double.infinity, bestOrder = orders.first ?? 0
        for (r, alpha) in zip(rdp, orders) {
            let candidate = r + log(1 / delta) / (alpha - 1)
            if candidate < best {
                best = candidate
                bestOrder = alpha
            }
        }
        return (best, bestOrder)
    }

    /// ε after `rounds` rounds of the subsampled Gaussian.
    package static func epsilon(q: Double, noiseMultiplier z: Double, rounds: Int, delta: Double,
                                series: FractionalSeries = .exact) -> (epsilon: Double, order: Double) {
        let perRound = subsampledGaussian(q: q, noiseMultiplier: z, series: series)
        return epsilon(rdp: perRound.map { $0 * Double(rounds) }, delta: delta)
    }

    /// The smallest noise multiplier whose ε after `rounds` rounds is at most `targetEpsilon`, to within
    /// `tolerance` (the returned z always satisfies ε(z) ≤ target). `nil` if even z = 1000 does not.
    package static func calibrate(q: Double, rounds: Int, delta: Double, targetEpsilon: Double,
                                  tolerance: Double = 1e-6, series: FractionalSeries = .exact) -> Double? {
        func fits(_ z: Double) -> Bool {
            epsilon(q: q, noiseMultiplier: z, rounds: rounds, delta: delta, series: series).epsilon <= targetEpsilon
        }
        var high = 1.0
        while !fits(high) {
            high *= 2
            if high > 1000 { return nil }
        }
        var low = high / 2
        if fits(low) {
            while low > 1e-3 && fits(low) { low /= 2 }
            if fits(low) { return low }
            high = low * 2
        }
        while high - low > tolerance {
            let middle = (low + high) / 2
            if fits(middle) { high = middle } else { low = middle }
        }
        return high
    }

    // MARK: - The series

    /// log A_α for integer α ≥ 2: Σ_k C(α,k)(1−q)^(α−k) q^k exp((k²−k)/(2z²)), summed in log space.
    static func logAInteger(q: Double, z: Double, alpha: Int) -> Double {
        var logA = -Double.infinity
        let logQ = log(q), log1MinusQ = log1p(-q), a = Double(alpha)
        for k in 0...alpha {
            let kk = Double(k)
            let coefficient: Double = lgamma(a + 1) - lgamma(kk + 1) - lgamma(a - kk + 1)
            let probabilities: Double = kk * logQ + (a - kk) * log1MinusQ
            let term: Double = coefficient + probabilities + (kk * kk - kk) / (2 * z * z)
            logA = logAdd(logA, term)
        }
        return logA
    }

    /// log A_α for fractional α (Mironov, Talwar, Zhang 2019, Sec. 3.3), with dp-accounting's stopping rule.
    static func logAFractional(q: Double, z: Double, alpha: Double, series: FractionalSeries) -> Double {
        let z0 = z * z * log(1 / q - 1) + 0.5
        let logQ = log(q), log1MinusQ = log1p(-q)
        // Signed sums kept as (log of positive part, log of negative part).
        var positive = -Double.infinity, negative = -Double.infinity
        var previous0 = Double.infinity, previous1 = Double.infinity
        for k in 0..<1000 {
            let kk = Double(k), j = alpha - kk
            var sign: Int32 = 1
            let logGammaJ = lgamma_r(j + 1, &sign)
            let logCoefficient: Double = lgamma(alpha + 1) - lgamma(kk + 1) - logGammaJ
            let scale: Double = 2.0.squareRoot() * z
            let moment0: Double = kk * logQ + j * log1MinusQ + (kk * kk - kk) / (2 * z * z)
            let moment1: Double = j * logQ + kk * log1MinusQ + (j * j - j) / (2 * z * z)
            let log0: Double = logCoefficient + moment0 + logHalfErfc((kk - z0) / scale)
            let log1: Double = logCoefficient + moment1 + logHalfErfc((z0 - j) / scale)
            if series == .exact && sign < 0 {
                negative = logAdd(logAdd(negative, log0), log1)
            } else {
                positive = logAdd(logAdd(positive, log0), log1)
            }
            let total = logSubtract(positive, negative)
            if log0 < previous0 && log1 < previous1 && max(log0, log1) < total - 30 { return total }
            previous0 = log0
            previous1 = log1
        }
        return .infinity
    }

    /// log(½·erfc(x)) = log Φ(−√2·x), accurate in the far tail.
    static func logHalfErfc(_ x: Double) -> Double { logNormalCDF(-2.0.squareRoot() * x) }

    /// log Φ(t) for the standard normal CDF.
    static func logNormalCDF(_ t: Double) -> Double {
        if t > -20 { return log(0.5 * erfc(-t / 2.0.squareRoot())) }
        // Asymptotic series of the Mills ratio: Φ(t) = φ(t)/|t| · (1 − 1/t² + 3/t⁴ − 15/t⁶ + 105/t⁸ − …).
        let t2 = t * t
        let t4: Double = t2 * t2
        let series: Double = 1 - 1 / t2 + 3 / t4 - 15 / (t4 * t2) + 105 / (t4 * t4)
        return -t2 / 2 - log(-t) - 0.5 * log(2 * Double.pi) + log(series)
    }

    package static func logAdd(_ a: Double, _ b: Double) -> Double {
        if a == -.infinity { return b }
        if b == -.infinity { return a }
        let high = max(a, b), low = min(a, b)
        return high + log1p(exp(low - high))
    }

    /// log(e^a − e^b) for a ≥ b.
    static func logSubtract(_ a: Double, _ b: Double) -> Double {
        if b == -.infinity { return a }
        guard a > b else { return -.infinity }
        return a + log1p(-exp(b - a))
    }
}
