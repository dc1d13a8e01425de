import FedModel
import Foundation

/// Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021, "Differentially Private Learning with
/// Adaptive Clipping"): the clip norm follows a target quantile γ of the users' update norms by a
/// geometric update, S ← S · exp(−η_C (b̄ − γ)), where b̄ is the fraction of sampled users whose update
/// was within S. Each agent releases the count of such users with Gaussian noise of multiplier σ_b
/// (sensitivity 1: a user changes the count by at most one), charged to its ledger as its own
/// subsampled Gaussian release; b̄ divides the summed noisy counts by the same fixed denominator as
/// the model average.
package struct AdaptiveClipping: Sendable, Equatable {
    package var targetQuantile: Double
    package var learningRate: Double
    package var countNoiseMultiplier: Double

    package init(targetQuantile: Double, learningRate: Double, countNoiseMultiplier: Double) {
        self.targetQuantile = targetQuantile
        self.learningRate = learningRate
        self.countNoiseMultiplier = countNoiseMultiplier
    }

    /// The next clip norm after a round in which a fraction `unclipped` (noisy, clamped to [0, 1]) of
    /// users was within `clipNorm`.
    package func next(clipNorm: Double, unclipped: Double) -> Double {
        clipNorm * exp(-learningRate * (min(1, max(0, unclipped)) - targetQuantile))
    }
}
