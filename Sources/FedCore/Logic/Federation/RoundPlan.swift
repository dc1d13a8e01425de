import FedModel

/// Training hyper-parameters the aggregator announces with each round.
package struct RoundHyperparameters: Sendable, Equatable {
    /// Poisson sampling rate of users at each agent.
    package var samplingRate: Double
    /// L2 bound S of each user's model delta.
    package var clipNorm: Double
    /// Gaussian noise multiplier z (noise std = z·S); 0 without privacy.
    package var noiseMultiplier: Double
    /// Local learning rate and steps per user.
    package var learningRate: Double
    package var localSteps: UInt32
    /// Most recent events per user used for training.
    package var sequenceLength: UInt32
    /// Adaptive clipping (Andrew et al. 2021): noise σ_b of the released centred count of sampled users
    /// whose delta was within S (sensitivity ½); 0 = fixed clipping, no count released.
    package var clipCountNoiseMultiplier: Double
    /// Drift thresholds: noise multiplier of each agent's histogram of its users' drift scores (each
    /// Poisson-sampled user counted once, sensitivity 1); 0 = no histogram this round.
    package var histogramNoiseMultiplier: Double
    /// Secure aggregation (``DistributedRelease``): the threshold t — the fewest agents whose sum can be
    /// unmasked, each adding 1/t of the noise — and the grid's bits per clip norm. 0: a plain round,
    /// each agent's update carries the whole noise and the aggregator sees it.
    package var secureThreshold: Int = 0
    package var secureBits: Int = 0

    /// The round's distributed release, when it runs with secure aggregation.
    package var distributedRelease: DistributedRelease? {
        guard secureThreshold > 0 else { return nil }
        return try? DistributedRelease(clipNorm: clipNorm, noiseMultiplier: noiseMultiplier, threshold: secureThreshold,
                                       bits: secureBits)
    }

    package init(samplingRate: Double, clipNorm: Double, noiseMultiplier: Double, learningRate: Double,
                 localSteps: UInt32, sequenceLength: UInt32, clipCountNoiseMultiplier: Double = 0,
                 histogramNoiseMultiplier: Double = 0) {
        self.histogramNoiseMultiplier = histogramNoiseMultiplier
        self.samplingRate = samplingRate
        self.clipNorm = clipNorm
        self.noiseMultiplier = noiseMultiplier
        self.learningRate = learningRate
        self.localSteps = localSteps
        self.sequenceLength = sequenceLength
        self.clipCountNoiseMultiplier = clipCountNoiseMultiplier
    }
}

/// A round as the agent and the round driver reason about it: round `round` trains on model
/// `modelVersion` until `deadlineMilliseconds` (Unix time). The wire's `RoundOpen` is mapped to and
/// from this at the node layer's gate, so no logic depends on a wire layout.
package struct RoundPlan: Sendable, Equatable {
    package var round, modelVersion: UInt64
    /// Unix time in milliseconds after which updates for this round are refused.
    package var deadlineMilliseconds: Int64
    package var minAgents: Int
    package var hyperparameters: RoundHyperparameters

    package init(round: UInt64, modelVersion: UInt64, deadlineMilliseconds: Int64, minAgents: Int,
                 hyperparameters: RoundHyperparameters) {
        (self.round, self.modelVersion, self.deadlineMilliseconds) = (round, modelVersion, deadlineMilliseconds)
        (self.minAgents, self.hyperparameters) = (minAgents, hyperparameters)
    }
}

/// What an agent releases for a round: the (noised) sum of its sampled users' clipped deltas.
package struct LocalUpdate: Sendable, Equatable {
    package var round, modelVersion: UInt64
    /// Users in the sum; zero when privacy is on (the exact count is itself data-dependent).
    package var users: Int
    /// Adaptive clipping: Σ (b − ½) over sampled users (b = 1 when the delta was within S), noised;
    /// 0 when off.
    package var clipCount: Double
    package var values: [Float]

    package init(round: UInt64, modelVersion: UInt64, users: Int, clipCount: Double = 0, values: [Float]) {
        (self.round, self.modelVersion, self.users, self.clipCount) = (round, modelVersion, users, clipCount)
        self.values = values
    }
}

/// An agent's (possibly noised) held-out evaluation of the global model `modelVersion`: counts over
/// its evaluated users, never per-user values.
package struct EvaluationRelease: Sendable, Equatable {
    package var round, modelVersion: UInt64
    package var users, top1Hits, top10Hits: Int
    /// Σ over users of the held-out event's cross-entropy, nats.
    package var lossSum: Double

    package init(round: UInt64, modelVersion: UInt64, users: Int, top1Hits: Int, top10Hits: Int, lossSum: Double) {
        (self.round, self.modelVersion, self.lossSum) = (round, modelVersion, lossSum)
        (self.users, self.top1Hits, self.top10Hits) = (users, top1Hits, top10Hits)
    }
}

/// An agent's noised histogram of its sampled users' drift scores over ``DriftHistogram/edges``.
package struct HistogramRelease: Sendable, Equatable {
    package var round: UInt64
    package var counts: [Double]

    package init(round: UInt64, counts: [Double]) {
        self.round = round
        self.counts = counts
    }
}

/// An agent's demand counts for one round (``CategoryDemand``, noised): shoppers active since its previous
/// release, in total and per model category index.
package struct DemandRelease: Sendable, Equatable {
    package var round: UInt64
    /// The noise's standard deviation per count (0: exact, NON-PRIVATE).
    package var noiseMultiplier: Double
    package var shoppers: Double
    package var counts: [Double]

    package init(round: UInt64, noiseMultiplier: Double, shoppers: Double, counts: [Double]) {
        (self.round, self.noiseMultiplier, self.shoppers, self.counts) = (round, noiseMultiplier, shoppers, counts)
    }
}

/// What an agent computed for one round.
package struct RoundWork: Sendable, Equatable {
    package var submission: LocalUpdate
    /// Held-out evaluation of the round's global model; nil when nothing could be evaluated.
    package var evaluation: EvaluationRelease?
    /// The noised drift-score histogram, when the round asked for one.
    package var histogram: HistogramRelease?
    /// The noised demand counts, when the agent releases them (`trends.release`).
    package var demand: DemandRelease?
    package var sampledUsers, clippedUsers: Int
    package var meanLoss, seconds: Double
    /// Training missed the cutoff: the update (and what-if counts) are noise alone, still charged.
    package var noiseOnly: Bool
    /// The ledger entries this work charged (signed, chained), sent before the update as its receipt.
    package var receipt: [LedgerRecord] = []
    /// With secure aggregation: the update on the secure grid with this agent's share of the noise, as
    /// 32-bit words. It carries too little noise to leave the agent unmasked; it is masked and sent in
    /// the protocol's step 2, and the submission's values are empty.
    package var secureInput: SecretWords?

    package init(submission: LocalUpdate, evaluation: EvaluationRelease?, histogram: HistogramRelease? = nil,
                 sampledUsers: Int, clippedUsers: Int, meanLoss: Double, seconds: Double, noiseOnly: Bool = false,
                 receipt: [LedgerRecord] = [], secureInput: SecretWords? = nil, demand: DemandRelease? = nil) {
        self.secureInput = secureInput
        self.demand = demand
        self.noiseOnly = noiseOnly
        self.receipt = receipt
        (self.submission, self.evaluation, self.histogram) = (submission, evaluation, histogram)
        (self.sampledUsers, self.clippedUsers) = (sampledUsers, clippedUsers)
        (self.meanLoss, self.seconds) = (meanLoss, seconds)
    }
}
