import FedModel
import Foundation

/// Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021, "Differentially Private Learning with
/// Adaptive Clipping"): the clip norm follows a target quantile γ of the users' update norms by a
/// geometric update, S ← S · exp(−η_C (b̄ − γ)), where b̄ is the fraction of sampled users whose update
/// was within S. Each agent releases Σ (b − ½) over its sampled users (b = 1 within S; centred, so
/// one user moves it by at most ½) plus N(0, σ_b²), from the update's own Poisson sample, so the
/// ledger charges update and count as one subsampled Gaussian
/// (``RoundReleasePlan/jointNoiseMultiplier(update:clipCount:)``); b̄ is the summed releases over the
/// same fixed denominator as the model average, plus ½.
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
