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
