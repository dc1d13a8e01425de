import FedModel
import Foundation

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
/// (Poisson-subsampled Gaussian, multiplier z) — with adaptive clipping, jointly with the centred clip
/// count released from the same sample (one mechanism, ``jointNoiseMultiplier(update:clipCount:)``) —
/// the alert-rate what-if counts (same sampling rate; four clipped sums with multiplier z_h each,
/// accounted as ``AlertRateCalibration/accountedNoiseMultiplier(_:)``) and the held-out evaluation
/// (unsampled Gaussian, multiplier z_e). `aggregator privacy-plan` composes exactly these.
package struct RoundReleasePlan: Sendable, Equatable {
    package var samplingRate: Double
    package var noiseMultiplier: Double
    package var clipCountNoiseMultiplier: Double?
    /// The aggregator's `drift.histogram_noise_multiplier` (per released sum).
    package var alertRateNoiseMultiplier: Double?
    /// The agent's `privacy.evaluation_noise_multiplier`.
    package var evaluationNoiseMultiplier: Double?
    /// The agent's `trends.noise_multiplier` when it releases demand counts (per count; Poisson-sampled
    /// shoppers at the round's rate, each in at most ``CategoryDemand/categoriesPerShopper`` categories
    /// and once in the total).
    package var demandNoiseMultiplier: Double?
    /// Parameters of the model, when the update is released with the discrete Gaussian on the
    /// quantised sum (``QuantisedRelease``): the rounding's extra sensitivity is charged, at integer
    /// orders. nil: the continuous Gaussian (the simulator's and the plan's model-free figures).
    package var dimension: Int?
    /// The update goes into secure aggregation with distributed noise: the charge is the aggregate
    /// mechanism at ``DistributedRelease/accountedNoiseMultiplier(dimension:)`` (needs `dimension`).
    package var secure: DistributedRelease?

    package init(samplingRate: Double, noiseMultiplier: Double, clipCountNoiseMultiplier: Double? = nil,
                 alertRateNoiseMultiplier: Double? = nil, evaluationNoiseMultiplier: Double? = nil,
                 dimension: Int? = nil, secure: DistributedRelease? = nil, demandNoiseMultiplier: Double? = nil) {
        self.dimension = dimension
        self.demandNoiseMultiplier = demandNoiseMultiplier
        self.secure = secure
        (self.samplingRate, self.noiseMultiplier) = (samplingRate, noiseMultiplier)
        (self.clipCountNoiseMultiplier, self.alertRateNoiseMultiplier) = (clipCountNoiseMultiplier, alertRateNoiseMultiplier)
        self.evaluationNoiseMultiplier = evaluationNoiseMultiplier
    }

    /// The clip count's L2 sensitivity: each sampled user adds b − ½ with b ∈ {0, 1} (centred, as in
    /// TensorFlow Federated's adaptive clipping), so adding or removing one user moves it by ½.
    package static let clipCountSensitivity = 0.5

    /// The noise multiplier of the update and the clip count released together from one Poisson
    /// sample. Scaling the update by 1/(zS) and the count by 1/σ_b gives one vector with unit noise
    /// per coordinate whose L2 sensitivity is √(1/z² + (½/σ_b)²): one subsampled Gaussian with
    /// z_eff = (z⁻² + (2σ_b)⁻²)^(−½) (Andrew et al. 2021, Thm 1). Composing the two separately
    /// under-charges (the sample is shared, so the releases are not independent mechanisms).
    package static func jointNoiseMultiplier(update z: Double, clipCount sigma: Double) -> Double {
        guard z > 0, sigma > 0 else { return 0 }
        let ratio = clipCountSensitivity / sigma
        return 1 / (1 / (z * z) + ratio * ratio).squareRoot()
    }

    /// Marks the update's ledger entry when it was released into secure aggregation.
    package static let secureSuffix = ":secagg"

    /// The model update (with the clip count, when adaptive clipping is on): Poisson-subsampled Gaussian.
    package func update(round: UInt64) -> PlannedRelease {
        let z: Double, suffix: String
        if let secure {
            // The aggregate of ≥ t agents' shares of the noise, on the secure grid (integer orders).
            (z, suffix) = (secure.accountedNoiseMultiplier(dimension: dimension ?? 0), Self.secureSuffix)
        } else {
            z = dimension.map { QuantisedRelease.accountedNoiseMultiplier(noiseMultiplier, dimension: $0) } ?? noiseMultiplier
            suffix = ""
        }
        var release: PlannedRelease
        if let sigma = clipCountNoiseMultiplier, sigma > 0 {
            // Exact mode: the count's grid adds one step to its sensitivity (``QuantisedRelease/noisedSums``).
            let count = dimension == nil ? sigma : sigma / (1 + 1 / Double(1 << QuantisedRelease.bits))
            release = .subsampledGaussian(mechanism: "model_update+clip_count" + suffix, round: round, q: samplingRate,
                                          noiseMultiplier: Self.jointNoiseMultiplier(update: z, clipCount: count))
        } else {
            release = .subsampledGaussian(mechanism: "model_update" + suffix, round: round, q: samplingRate, noiseMultiplier: z)
        }
        if dimension != nil || secure != nil { release.rdp = RDP.integerOrdersOnly(release.rdp) }
        return release
    }

    /// The alert-rate what-if counts, when planned (exact mode: four quantised sums, integer orders).
    package func alertRate(round: UInt64) -> PlannedRelease? {
        guard let z = alertRateNoiseMultiplier, z > 0 else { return nil }
        guard dimension != nil else {
            return .subsampledGaussian(mechanism: "alert_rate", round: round, q: samplingRate,
                                       noiseMultiplier: AlertRateCalibration.accountedNoiseMultiplier(z))
        }
        var release = PlannedRelease.subsampledGaussian(
            mechanism: "alert_rate", round: round, q: samplingRate,
            noiseMultiplier: QuantisedRelease.accountedSumsNoiseMultiplier(z, count: AlertRateCalibration.releasedCoordinates))
        release.rdp = RDP.integerOrdersOnly(release.rdp)
        return release
    }

    /// The held-out evaluation, when planned: not subsampled (exact mode: four quantised sums, each
    /// moved by at most 1 by one user, noise 2·z_e each).
    package func evaluation(round: UInt64) -> PlannedRelease? {
        guard let z = evaluationNoiseMultiplier, z > 0 else { return nil }
        let accounted = dimension == nil ? z : QuantisedRelease.accountedSumsNoiseMultiplier(2 * z, count: 4)
        return .gaussian(mechanism: "evaluation", round: round, noiseMultiplier: accounted)
    }

    /// The demand counts, when planned: Poisson-subsampled shoppers (the round's q), C + 1 sums each moved
    /// by at most 1 by a shopper, who touches at most k + 1 of them — L2 sensitivity √(k + 1) (exact mode:
    /// quantised sums, integer orders).
    package func demand(round: UInt64) -> PlannedRelease? {
        guard let z = demandNoiseMultiplier, z > 0 else { return nil }
        let coordinates = CategoryDemand.categoriesPerShopper + 1
        guard dimension != nil else {
            return .subsampledGaussian(mechanism: "demand_counts", round: round, q: samplingRate,
                                       noiseMultiplier: z / Double(coordinates).squareRoot())
        }
        var release = PlannedRelease.subsampledGaussian(
            mechanism: "demand_counts", round: round, q: samplingRate,
            noiseMultiplier: QuantisedRelease.accountedSumsNoiseMultiplier(z, count: coordinates))
        release.rdp = RDP.integerOrdersOnly(release.rdp)
        return release
    }

    /// Round `round`'s releases, in the order the worker charges them.
    package func releases(round: UInt64) -> [PlannedRelease] {
        [update(round: round)] + [alertRate(round: round), evaluation(round: round), demand(round: round)].compactMap { $0 }
    }

    /// The RDP curve of `rounds` rounds (all releases composed).
    package func rdp(rounds: Int) -> [Double] {
        var total = [Double](repeating: 0, count: RDP.defaultOrders.count)
        for release in releases(round: 1) { total = zip(total, release.rdp).map { $0 + $1 } }
        return total.map { $0 * Double(rounds) }
    }

    /// The privacy loss distribution of `rounds` rounds: every release as the Gaussian mechanism at its
    /// accounted multiplier (Poisson-subsampled at q when it is), composed over the rounds and across
    /// releases — tighter than the RDP conversion, as dp-accounting's `PLDAccountant`. For the agents'
    /// discrete releases this models each as the continuous Gaussian at the accounted multiplier (an
    /// estimate: the bound FedDrift proves for them, and the ledger charges, is RDP at integer orders).
    package func privacyLossDistribution(rounds: Int) throws(PrivacyLossDistribution.TooLarge)
        -> PrivacyLossDistribution
    {
        try PrivacyLossDistribution.composition(of: releases(round: 1).map {
            (samplingRate: $0.samplingRate, noiseMultiplier: $0.noiseMultiplier, count: rounds)
        })
    }

    /// ρ of `rounds` rounds in zero-concentrated DP (Bun, Steinke 2016): Σ 1/(2 z²) over releases. A
    /// Gaussian of multiplier z is exactly 1/(2z²)-zCDP; Poisson subsampling gains nothing in zCDP
    /// (its Rényi divergence tends to α/(2z²) as α grows), so this is the unamplified figure — the
    /// (ε, δ) from the RDP curve is the one the budget uses.
    package func zCDP(rounds: Int) -> Double {
        releases(round: 1).reduce(0) { total, release in
            total + (release.noiseMultiplier > 0 ? 1 / (2 * release.noiseMultiplier * release.noiseMultiplier) : .infinity)
        } * Double(rounds)
    }
}

/// An agent's own floor on the noise of what it releases, enforced whatever the aggregator announces
/// (the aggregator is not trusted to keep privacy on): a round whose planned releases break it is
/// refused before any data is read. The budget bounds the total; the floor bounds each round, so an
/// aggregator cannot spend a whole budget in a few nearly noiseless rounds. A release's clip norm S
/// enters only through the noise per unit of S (σ = z·S), so the floor on z is also the bound on S
/// per unit of noise.
package struct PrivacyFloor: Sendable, Equatable, Codable {
    /// The smallest noise multiplier of any release, as accounted (update joint with the clip count,
    /// alert-rate counts at their accounted multiplier, evaluations).
    package var minNoiseMultiplier: Double
    /// The largest Poisson sampling rate.
    package var maxSamplingRate: Double

    package init(minNoiseMultiplier: Double = 0.5, maxSamplingRate: Double = 0.5) {
        (self.minNoiseMultiplier, self.maxSamplingRate) = (minNoiseMultiplier, maxSamplingRate)
    }

    /// Why `plan` breaks the floor, or nil when every release keeps it.
    package func refusal(of plan: RoundReleasePlan) -> String? {
        if !(plan.samplingRate <= maxSamplingRate) {
            return String(format: "the announced sampling rate q = %g is above this agent's max_sampling_rate %g",
                          plan.samplingRate, maxSamplingRate)
        }
        for release in plan.releases(round: 0) where !(release.noiseMultiplier >= minNoiseMultiplier) {
            return String(format: "the %@ release would have noise multiplier %g (as accounted), below this agent's "
                          + "min_noise_multiplier %g", release.mechanism, release.noiseMultiplier, minNoiseMultiplier)
        }
        // Secure aggregation: the agent's own 1/t share must keep the floor too, so that an aggregator
        // that invented the other parties of the round would still see at least that much noise.
        if let secure = plan.secure {
            let own = secure.agentNoiseMultiplier(dimension: plan.dimension ?? 0)
            if !(own >= minNoiseMultiplier) {
                return String(format: "with secure aggregation at threshold %d this agent's own share of the noise would "
                              + "have noise multiplier %g, below its min_noise_multiplier %g", secure.threshold, own,
                              minNoiseMultiplier)
            }
        }
        return nil
    }
}

/// One entry of an agent's signed, hash-chained privacy ledger, as it travels in a ledger receipt.
package struct LedgerRecord: Sendable, Equatable {
    package var id: Int64
    package var previousHash: [UInt8]
    package var round: UInt64
    package var mechanism: String
    package var samplingRate: Double
    package var noiseMultiplier: Double
    /// The RDP curve as stored (float64 × ``RDP/defaultOrders``).
    package var rdp: [UInt8]
    package var epsilonAfter: Double
    package var createdAtMilliseconds: Int64
    package var hash: [UInt8]
    /// The agent's Ed25519 signature of `hash` (empty when the ledger has no signer).
    package var signature: [UInt8]

    package init(id: Int64, previousHash: [UInt8], round: UInt64, mechanism: String, samplingRate: Double,
                 noiseMultiplier: Double, rdp: [UInt8], epsilonAfter: Double, createdAtMilliseconds: Int64,
                 hash: [UInt8], signature: [UInt8]) {
        (self.id, self.previousHash, self.round, self.mechanism) = (id, previousHash, round, mechanism)
        (self.samplingRate, self.noiseMultiplier, self.rdp) = (samplingRate, noiseMultiplier, rdp)
        (self.epsilonAfter, self.createdAtMilliseconds, self.hash, self.signature) =
            (epsilonAfter, createdAtMilliseconds, hash, signature)
    }

    /// Whether this entry charges a round's model update (alone or with the clip count).
    package var isUpdate: Bool { mechanism.hasPrefix("model_update") }
}
