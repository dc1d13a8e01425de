import FedModel
import Foundation

/// The previous federated threshold estimator, kept as the must-fail control of `AlertCalibrationTests`
/// (the agents now use ``AlertRateCalibration``): each agent released a DP histogram of its users'
/// current scores over fixed log-spaced bins, and the aggregator picked the threshold whose estimated
/// share of users at or above it was the target. Clamping negative noisy counts and accumulating the tail
/// from the top adds phantom users in every empty bin, so it lands too high at deployment sizes.
package enum DriftHistogram {
    /// Bin lower edges: 0, then 48 log-spaced edges from 0.1 to 1000 (×1.21 each); the last bin is open.
    package static let edges: [Double] = [0] + (0..<48).map { 0.1 * pow(10, Double($0) * 4 / 47) }

    /// The bin of `score`.
    package static func bin(of score: Double) -> Int {
        guard score.isFinite, score > 0 else { return score.isFinite ? 0 : edges.count - 1 }
        var low = 0, high = edges.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if edges[middle] <= score { low = middle } else { high = middle - 1 }
        }
        return low
    }

    /// Exact counts of `scores` per bin.
    package static func counts(_ scores: some Sequence<Double>) -> [Double] {
        var counts = [Double](repeating: 0, count: edges.count)
        for score in scores { counts[bin(of: score)] += 1 }
        return counts
    }

    /// The agent's release: counts + N(0, σ²) per bin, snapped (``GaussianNoise``).
    package static func release<G: RandomNumberGenerator>(_ counts: [Double], sigma: Double,
                                                          noise: inout GaussianNoise<G>) -> [Double] {
        counts.map { noise.noised(count: $0, sigma: sigma) }
    }

    /// The lowest bin edge at which the estimated share of users with a score at or above it is at most
    /// `targetRate`, from summed noisy histograms (negative noisy counts clamped to zero; the tail is
    /// accumulated from the top so noise in the bulk does not matter). `nil` when nothing was counted.
    package static func threshold(merged: [Double], targetRate: Double) -> Double? {
        precondition(merged.count == edges.count && targetRate > 0 && targetRate < 1)
        let counts = merged.map { max(0, $0) }
        let total = counts.reduce(0, +)
        guard total >= 1 else { return nil }
        var tail = 0.0
        var chosen = edges.count - 1
        for index in stride(from: edges.count - 1, through: 1, by: -1) {
            tail += counts[index]
            if tail / total > targetRate { break }
            chosen = index
        }
        return edges[chosen]
    }
}
