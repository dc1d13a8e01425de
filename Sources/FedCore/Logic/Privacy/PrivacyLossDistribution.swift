import FedModel
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A discretised privacy loss distribution (PLD): probability masses on the losses i·Δ for
/// consecutive integers i, plus a mass at +∞. For a pair of output distributions (P, Q) the privacy
/// loss is L = log(P(o)/Q(o)) with o ~ P; the hockey-stick divergence it gives is
/// δ(ε) = P(L = ∞) + E[(1 − e^{ε−L})₊], and composing mechanisms convolves their PLDs
/// (Dwork–Rothblum 2016; Koskela, Jälkö, Honkela 2020; Sommer, Meiser, Mohammadi 2019).
///
/// Every step is pessimistic: discretisation by connect-the-dots (``PrivacyLossDistribution``),
/// tails cut by a Chernoff bound moved to +∞, and negative round-off in a convolution set to 0, so
/// the ε read from it is an upper bound on the true ε of the modelled mechanism.
package struct PrivacyLossPMF: Sendable, Equatable {
    /// Δ: the losses are multiples of it.
    package var discretization: Double
    /// The loss of `probabilities[0]`, in units of Δ.
    package var lowerLoss: Int
    package var probabilities: [Double]
    package var infinityMass: Double

    package init(discretization: Double, lowerLoss: Int, probabilities: [Double], infinityMass: Double) {
        (self.discretization, self.lowerLoss) = (discretization, lowerLoss)
        (self.probabilities, self.infinityMass) = (probabilities, infinityMass)
    }

    /// The PLD of releasing nothing: all mass at loss 0.
    package static func identity(discretization: Double) -> PrivacyLossPMF {
        PrivacyLossPMF(discretization: discretization, lowerLoss: 0, probabilities: [1], infinityMass: 0)
    }

    /// The loss at index `index` of ``probabilities``.
    package func loss(at index: Int) -> Double { Double(lowerLoss + index) * discretization }

    /// δ(ε) = P(L = ∞) + Σ_{l > ε} p_l (1 − e^{ε − l}).
    @_optimize(speed)
    package func delta(epsilon: Double) -> Double {
        var delta = infinityMass
        for index in probabilities.indices.reversed() {
            let l = loss(at: index)
            guard l > epsilon else { break }
            delta += probabilities[index] * -expm1(epsilon - l)
        }
        return min(1, delta)
    }

    /// The smallest ε ≥ 0 with δ(ε) ≤ `delta` (+∞ when the mass at +∞ alone exceeds it). Between two
    /// consecutive losses δ(ε) = A − e^ε·B, with A the mass above and B = Σ p_l e^{−l} over it, so the
    /// answer is log((A − δ)/B) on the first interval, scanning down from the top, that contains it.
    @_optimize(speed)
    package func epsilon(delta: Double) -> Double {
        if infinityMass > delta { return .infinity }
        var above = infinityMass, weighted = 0.0
        for index in probabilities.indices.reversed() {
            let p = probabilities[index]
            guard p > 0 else { continue }
            let l = loss(at: index)
            if above > delta, weighted > 0, log((above - delta) / weighted) >= l { break }
            above += p
            weighted += exp(-l) * p
            // e^{−l} underflowed: the mass sits at a loss so large that ε cannot go below it.
            if above >= delta, weighted == 0 { return max(0, l) }
        }
        if above <= weighted + delta { return 0 }
        return max(0, log((above - delta) / weighted))
    }

    /// The PLD of running this mechanism and then `other` (independent randomness): the convolution.
    @_optimize(speed)
    package func composed(with other: PrivacyLossPMF) throws(PrivacyLossDistribution.TooLarge) -> PrivacyLossPMF {
        precondition(discretization == other.discretization, "composed PLDs must share the discretization")
        let points = probabilities.count + other.probabilities.count - 1
        guard FFT.size(atLeast: points) <= PrivacyLossDistribution.maximumPoints else {
            throw PrivacyLossDistribution.TooLarge(points: points)
        }
        let masses = FFT.convolve(probabilities, other.probabilities).map { max(0, $0) }
        return PrivacyLossPMF(discretization: discretization, lowerLoss: lowerLoss + other.lowerLoss,
                              probabilities: masses,
                              infinityMass: infinityMass + other.infinityMass - infinityMass * other.infinityMass)
    }

    /// The PLD of `times` independent runs. The result keeps only the window of losses outside which
    /// a Chernoff bound puts at most `tailMassTruncation` of mass; that mass is moved to +∞.
    @_optimize(speed)
    package func selfComposed(_ times: Int, tailMassTruncation: Double = 1e-15)
        throws(PrivacyLossDistribution.TooLarge) -> PrivacyLossPMF
    {
        precondition(times >= 1)
        guard times > 1 else { return self }
        let (low, high) = Self.chernoffWindow(probabilities, times: times, tailMass: tailMassTruncation)
        let count = high - low + 1
        guard count <= PrivacyLossDistribution.maximumPoints else { throw PrivacyLossDistribution.TooLarge(points: count) }
        let size = FFT.size(atLeast: max(count, probabilities.count))
        let cyclic = FFT.selfConvolve(probabilities, times: times, size: size)
        let window = (0..<count).map { max(0, cyclic[(($0 + low) % size + size) % size]) }
        let infinity = tailMassTruncation - expm1(Double(times) * log1p(-infinityMass))
        return PrivacyLossPMF(discretization: discretization, lowerLoss: lowerLoss * times + low,
                              probabilities: window, infinityMass: min(1, infinity))
    }

    /// Indices [low, high] of the `times`-fold sum of indices drawn from `masses` outside which the
    /// mass is at most `tailMass` (half on each side): P(S ≥ a) ≤ exp(t·log M(λ) − λa) for λ > 0, and
    /// the mirror for λ < 0, with M the moment generating function, at 40 values of λ.
    @_optimize(speed)
    static func chernoffWindow(_ masses: [Double], times: Int, tailMass: Double) -> (low: Int, high: Int) {
        let last = (masses.count - 1) * times
        guard tailMass > 0, masses.count > 1 else { return (0, last) }
        let n = Double(masses.count)
        let logMasses = masses.map { $0 > 0 ? log($0) : -Double.infinity }
        var low = 0, high = last
        for k in [Int](-20...(-1)) + [Int](1...20) {
            let lambda = Double(k) / n
            // log Σ p_i e^{λ i}, stably (index loops: no generic iterators in this hot path).
            var peak = -Double.infinity
            for i in 0..<logMasses.count where logMasses[i] > -.infinity {
                peak = max(peak, logMasses[i] + lambda * Double(i))
            }
            var sum = 0.0
            for i in 0..<logMasses.count where logMasses[i] > -.infinity {
                sum += exp(logMasses[i] + lambda * Double(i) - peak)
            }
            let bound = (Double(times) * (peak + log(sum)) + log(2 / tailMass)) / lambda
            guard bound.isFinite else { continue }
            if lambda > 0 { high = min(high, Int(min(Double(last), bound.rounded(.up)))) }
            else { low = max(low, Int(max(0, bound.rounded(.down)))) }
        }
        return (min(low, high), high)
    }
}

/// The privacy loss distribution of a mechanism under add-or-remove-one-user neighbours: one PLD
/// for removing a user and one for adding one (they differ under subsampling); ε is the larger of
/// the two. This is the accountant dp-accounting's `PLDAccountant` implements, written from the
/// papers: connect-the-dots discretisation (Doroshenko, Ghazi, Kamath, Kumar, Manurangsi 2022) of
/// the exact hockey-stick curve of the Poisson-subsampled Gaussian, FFT composition with Chernoff
/// tail truncation (Koskela et al. 2020), Δ = 10⁻⁴ and tails of mass e⁻⁵⁰ by default.
package struct PrivacyLossDistribution: Sendable, Equatable {
    package var remove: PrivacyLossPMF
    /// nil when the mechanism is symmetric (no subsampling): adding then equals removing.
    package var add: PrivacyLossPMF?

    package static let defaultDiscretization = 1e-4
    /// The most points a PLD or an FFT may have (2²³: 64 MiB per array). Only noise far below any
    /// useful privacy needs more (the losses then span millions of Δ); those mechanisms are refused.
    package static let maximumPoints = 1 << 23

    /// A mechanism whose PLD would need more than ``maximumPoints`` points at this discretization.
    package struct TooLarge: Error, Equatable, CustomStringConvertible {
        package var points: Int
        package var description: String {
            "the privacy loss distribution would need \(points) points (at most \(PrivacyLossDistribution.maximumPoints)): "
                + "the noise is far too small for PLD accounting"
        }
    }

    package init(remove: PrivacyLossPMF, add: PrivacyLossPMF?) {
        (self.remove, self.add) = (remove, add)
    }

    package static func identity(discretization: Double = defaultDiscretization) -> PrivacyLossDistribution {
        PrivacyLossDistribution(remove: .identity(discretization: discretization), add: nil)
    }

    /// The Gaussian mechanism of L2 sensitivity 1 and noise multiplier `z`, each user included with
    /// probability `q` (Poisson). With o the output along the direction of the user's contribution:
    /// removing compares P = (1−q)N(0, z²) + qN(1, z²) with Q = N(0, z²), loss
    /// L(o) = log(1 − q + q e^{(2o−1)/(2z²)}); adding compares Q with P, loss −L(o).
    package static func subsampledGaussian(samplingRate q: Double, noiseMultiplier z: Double,
                                           discretization: Double = defaultDiscretization,
                                           logMassTruncationBound: Double = -50) throws(TooLarge)
        -> PrivacyLossDistribution
    {
        precondition(q > 0 && q <= 1 && z > 0 && discretization > 0)
        let curve = GaussianHockeyStick(q: q, sigma: z)
        // Outputs beyond ±t·z (t: the normal quantile of ½e^{bound}) carry negligible mass; the grid
        // spans the losses over [−t z, t z + 1], and connect-the-dots moves what lies past it to the ends.
        let t = -StandardNormal.quantile(lowerTailLog: log(0.5) + logMassTruncationBound)
        let (lowOutput, highOutput) = (-t * z, t * z + 1)
        let remove = try connectTheDots(lower: curve.removeLoss(lowOutput), upper: curve.removeLoss(highOutput),
                                        discretization: discretization, delta: curve.removeDelta)
        guard q < 1 else { return PrivacyLossDistribution(remove: remove, add: nil) }
        let add = try connectTheDots(lower: -curve.removeLoss(highOutput), upper: -curve.removeLoss(lowOutput),
                                     discretization: discretization, delta: curve.addDelta)
        return PrivacyLossDistribution(remove: remove, add: add)
    }

    /// The pessimistic connect-the-dots PLD on the grid ⌊lower/Δ⌋…⌈upper/Δ⌉: the masses are chosen so
    /// that its hockey-stick curve equals `delta` at every grid point and is linear in e^ε between
    /// them. The true curve is convex in e^ε, so the chord lies above it: ε is never under-stated.
    @_optimize(speed)
    static func connectTheDots(lower: Double, upper: Double, discretization d: Double,
                               delta: (Double) -> Double) throws(TooLarge) -> PrivacyLossPMF {
        let span = (upper / d).rounded(.up) - (lower / d).rounded(.down) + 1
        guard span.isFinite, span <= Double(maximumPoints) else {
            throw TooLarge(points: span.isFinite ? Int(span) : .max)
        }
        let first = Int((lower / d).rounded(.down)), last = max(first, Int((upper / d).rounded(.up)))
        var deltas = (first...last).map { delta(Double($0) * d) }
        // δ is non-increasing; clear round-off so the masses come out non-negative.
        for index in deltas.indices.dropFirst() { deltas[index] = min(deltas[index], deltas[index - 1]) }
        let n = deltas.count
        guard n > 1 else {
            return PrivacyLossPMF(discretization: d, lowerLoss: first, probabilities: [1 - deltas[0]],
                                  infinityMass: deltas[0])
        }
        let step = expm1(d), up = exp(d)
        var masses = [Double](repeating: 0, count: n)
        masses[0] = (1 - deltas[0]) + (deltas[1] - deltas[0]) / step
        for i in 1..<(n - 1) {
            masses[i] = ((deltas[i + 1] - deltas[i]) - up * (deltas[i] - deltas[i - 1])) / step
        }
        masses[n - 1] = (deltas[n - 1] - deltas[n - 2]) / expm1(-d)
        return PrivacyLossPMF(discretization: d, lowerLoss: first, probabilities: masses.map { max(0, $0) },
                              infinityMass: deltas[n - 1])
    }

    /// Both mechanisms, one after the other.
    package func composed(with other: PrivacyLossDistribution) throws(TooLarge) -> PrivacyLossDistribution {
        let remove = try self.remove.composed(with: other.remove)
        guard add != nil || other.add != nil else { return PrivacyLossDistribution(remove: remove, add: nil) }
        return PrivacyLossDistribution(remove: remove,
                                       add: try (add ?? self.remove).composed(with: other.add ?? other.remove))
    }

    /// `times` runs of this mechanism.
    package func selfComposed(_ times: Int) throws(TooLarge) -> PrivacyLossDistribution {
        PrivacyLossDistribution(remove: try remove.selfComposed(times), add: try add?.selfComposed(times))
    }

    package func epsilon(delta: Double) -> Double {
        max(remove.epsilon(delta: delta), add?.epsilon(delta: delta) ?? 0)
    }

    package func delta(epsilon: Double) -> Double {
        max(remove.delta(epsilon: epsilon), add?.delta(epsilon: epsilon) ?? 0)
    }

    /// The smallest z (to 1e-5 relative) whose `rounds` Poisson-subsampled Gaussian rounds stay within
    /// `targetEpsilon` at `delta` by PLD, searched between 0.05 and 1000; nil when even 1000 does not.
    package static func calibrate(samplingRate q: Double, rounds: Int, delta: Double, targetEpsilon: Double) -> Double? {
        func fits(_ z: Double) -> Bool {
            guard let pld = try? subsampledGaussian(samplingRate: q, noiseMultiplier: z).selfComposed(rounds) else {
                return false
            }
            return pld.epsilon(delta: delta) <= targetEpsilon
        }
        var (low, high) = (0.05, 1.0)
        while !fits(high) {
            guard high < 1000 else { return nil }
            (low, high) = (high, min(1000, high * 2))
        }
        while high - low > 1e-5 * high {
            let middle = (low + high) / 2
            if fits(middle) { high = middle } else { low = middle }
        }
        return high
    }

    /// The composition of `count` runs of each (q, z) Gaussian mechanism (q = 1: no subsampling).
    package static func composition(of mechanisms: [(samplingRate: Double, noiseMultiplier: Double, count: Int)],
                                    discretization: Double = defaultDiscretization) throws(TooLarge)
        -> PrivacyLossDistribution
    {
        var total: PrivacyLossDistribution?
        for mechanism in mechanisms where mechanism.count > 0 {
            let one = try subsampledGaussian(samplingRate: mechanism.samplingRate,
                                             noiseMultiplier: mechanism.noiseMultiplier, discretization: discretization)
            let composed = try one.selfComposed(mechanism.count)
            total = try total.map { previous throws(TooLarge) in try previous.composed(with: composed) } ?? composed
        }
        return total ?? identity(discretization: discretization)
    }
}

/// The exact hockey-stick divergence δ(ε) = sup_S P(S) − e^ε Q(S) of the subsampled Gaussian pair.
struct GaussianHockeyStick {
    var q: Double
    var sigma: Double

    /// log(1 − q + q e^{(2o−1)/(2σ²)}), stably for any o.
    func removeLoss(_ output: Double) -> Double {
        let exponent = (2 * output - 1) / (2 * sigma * sigma)
        guard q < 1 else { return exponent }
        let a = log1p(-q), b = log(q) + exponent
        return max(a, b) + log1p(exp(-abs(a - b)))
    }

    /// log(e^x − (1 − q)) for x > log(1 − q), without overflow.
    private func logShifted(_ x: Double) -> Double {
        x > 30 ? x + log1p((q - 1) * exp(-x)) : log(expm1(x) + q)
    }

    /// Removing a user: the loss increases with o, so S = {o > o*} with L(o*) = ε.
    func removeDelta(_ epsilon: Double) -> Double {
        if q < 1, epsilon <= log1p(-q) { return -expm1(epsilon) }
        let logShift = logShifted(epsilon)
        let threshold = sigma * sigma * (logShift - log(q)) + 0.5
        let value = q * exp(StandardNormal.logUpperTail((threshold - 1) / sigma))
            - exp(logShift + StandardNormal.logUpperTail(threshold / sigma))
        return min(1, max(0, value))
    }

    /// Adding a user: the loss −L(o) decreases with o (at most −log(1 − q)), so S = {o < o*}.
    func addDelta(_ epsilon: Double) -> Double {
        if q < 1, epsilon >= -log1p(-q) { return 0 }
        let logShift = logShifted(-epsilon)
        let threshold = sigma * sigma * (logShift - log(q)) + 0.5
        let lower = exp(StandardNormal.logUpperTail(-threshold / sigma))
        let shifted = exp(StandardNormal.logUpperTail((1 - threshold) / sigma))
        let value = lower - exp(epsilon) * ((1 - q) * lower + q * shifted)
        return min(1, max(0, value))
    }
}

/// Tails of the standard normal distribution, accurate far out.
enum StandardNormal {
    /// log P(X > y).
    static func logUpperTail(_ y: Double) -> Double {
        if y < 25 { return log(0.5 * erfc(y / 2.0.squareRoot())) }
        // Asymptotic series of Mills' ratio: erfc has underflowed or is about to.
        let inverse = 1 / (y * y)
        return -0.5 * y * y - log(y * (2 * Double.pi).squareRoot())
            + log1p(-inverse + 3 * inverse * inverse - 15 * inverse * inverse * inverse)
    }

    /// The x with log P(X < x) = `lowerTailLog` (< log ½), by Newton's method on log Φ.
    static func quantile(lowerTailLog target: Double) -> Double {
        var x = -(-2 * target).squareRoot()
        for _ in 0..<100 {
            let logCDF = logUpperTail(-x)
            // d/dx log Φ(x) = φ(x)/Φ(x).
            let slope = exp(-0.5 * x * x - 0.5 * log(2 * Double.pi) - logCDF)
            let next = x - (logCDF - target) / slope
            if abs(next - x) < 1e-13 * max(1, abs(x)) { return next }
            x = next
        }
        return x
    }
}
