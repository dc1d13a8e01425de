import FedModel

/// The (ε, δ) an agent may spend over its lifetime, for all its releases together.
package struct PrivacyBudget: Sendable, Equatable, Codable {
    package var epsilon: Double
    package var delta: Double

    package init(epsilon: Double, delta: Double) {
        self.epsilon = epsilon
        self.delta = delta
    }
}

/// A release about to leave the agent, with its privacy cost as an RDP curve over ``RDP/defaultOrders``.
package struct PlannedRelease: Sendable, Equatable {
    /// What is released: `model_update`, `evaluation`, `alert_rate`, `clip_count`.
    package var mechanism: String
    package var round: UInt64
    /// The mechanism's parameters, for the audit trail.
    package var samplingRate: Double
    package var noiseMultiplier: Double
    package var rdp: [Double]

    /// One round of the Poisson-subsampled Gaussian (sensitivity = the clip norm, noise z·S).
    package static func subsampledGaussian(mechanism: String, round: UInt64, q: Double, noiseMultiplier z: Double)
        -> PlannedRelease
    {
        PlannedRelease(mechanism: mechanism, round: round, samplingRate: q, noiseMultiplier: z,
                       rdp: RDP.subsampledGaussian(q: q, noiseMultiplier: z))
    }

    /// One Gaussian release without sampling; `noiseMultiplier` = σ / (L2 sensitivity).
    package static func gaussian(mechanism: String, round: UInt64, noiseMultiplier: Double) -> PlannedRelease {
        PlannedRelease(mechanism: mechanism, round: round, samplingRate: 1, noiseMultiplier: noiseMultiplier,
                       rdp: RDP.defaultOrders.map { RDP.gaussian(noiseMultiplier: noiseMultiplier, order: $0) })
    }
}

/// The releases one agent makes in one round, as the round worker charges them: the model update
/// (Poisson-subsampled Gaussian, multiplier z), the adaptive-clipping count (same sample, its own
/// multiplier), the alert-rate what-if counts (same sampling rate; four clipped sums with multiplier
/// z_h each, accounted as ``AlertRateCalibration/accountedNoiseMultiplier(_:)``) and the held-out
/// evaluation (unsampled Gaussian, multiplier z_e). `aggregator privacy-plan` composes exactly these.
package struct RoundReleasePlan: Sendable, Equatable {
    package var samplingRate: Double
    package var noiseMultiplier: Double
    package var clipCountNoiseMultiplier: Double?
    /// The aggregator's `drift.histogram_noise_multiplier` (per released sum).
    package var alertRateNoiseMultiplier: Double?
    /// The agent's `privacy.evaluation_noise_multiplier`.
    package var evaluationNoiseMultiplier: Double?

    package init(samplingRate: Double, noiseMultiplier: Double, clipCountNoiseMultiplier: Double? = nil,
                 alertRateNoiseMultiplier: Double? = nil, evaluationNoiseMultiplier: Double? = nil) {
        (self.samplingRate, self.noiseMultiplier) = (samplingRate, noiseMultiplier)
        (self.clipCountNoiseMultiplier, self.alertRateNoiseMultiplier) = (clipCountNoiseMultiplier, alertRateNoiseMultiplier)
        self.evaluationNoiseMultiplier = evaluationNoiseMultiplier
    }

    /// The model update: Poisson-subsampled Gaussian (q, z).
    package func update(round: UInt64) -> PlannedRelease {
        .subsampledGaussian(mechanism: "model_update", round: round, q: samplingRate, noiseMultiplier: noiseMultiplier)
    }

    /// The adaptive-clipping count, when planned: the update's sample, its own multiplier.
    package func clipCount(round: UInt64) -> PlannedRelease? {
        guard let z = clipCountNoiseMultiplier, z > 0 else { return nil }
        return .subsampledGaussian(mechanism: "clip_count", round: round, q: samplingRate, noiseMultiplier: z)
    }

    /// The alert-rate what-if counts, when planned.
    package func alertRate(round: UInt64) -> PlannedRelease? {
        guard let z = alertRateNoiseMultiplier, z > 0 else { return nil }
        return .subsampledGaussian(mechanism: "alert_rate", round: round, q: samplingRate,
                                   noiseMultiplier: AlertRateCalibration.accountedNoiseMultiplier(z))
    }

    /// The held-out evaluation, when planned: not subsampled.
    package func evaluation(round: UInt64) -> PlannedRelease? {
        guard let z = evaluationNoiseMultiplier, z > 0 else { return nil }
        return .gaussian(mechanism: "evaluation", round: round, noiseMultiplier: z)
    }

    /// Round `round`'s releases, in the order the worker charges them.
    package func releases(round: UInt64) -> [PlannedRelease] {
        [update(round: round)] + [clipCount(round: round), alertRate(round: round), evaluation(round: round)].compactMap { $0 }
    }

    /// The RDP curve of `rounds` rounds (all releases composed).
    package func rdp(rounds: Int) -> [Double] {
        var total = [Double](repeating: 0, count: RDP.defaultOrders.count)
        for release in releases(round: 1) { total = zip(total, release.rdp).map { $0 + $1 } }
        return total.map { $0 * Double(rounds) }
    }
}
