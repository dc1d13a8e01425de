import FedModel
import Foundation

/// The federated drift threshold: each agent releases a DP histogram of its users' current drift scores
/// over fixed log-spaced bins (each user counted once: L2 sensitivity 1; Gaussian noise, charged to the
/// ledger as a Gaussian mechanism); the aggregator sums the noisy histograms, picks the threshold whose
/// estimated share of users at or above it is the operator's target alert rate, and smooths it across
/// rounds (in log space, so one noisy round cannot move it far).
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

/// Smoothing of the broadcast threshold across rounds: a geometric moving average.
package struct ThresholdSmoother: Sendable, Equatable {
    package var weight: Double
    package private(set) var current: Double?

    package init(weight: Double = 0.3, current: Double? = nil) {
        self.weight = weight
        self.current = current
    }

    /// Takes this round's threshold; returns the one to broadcast.
    package mutating func update(_ threshold: Double) -> Double {
        let next = current.map { exp((1 - weight) * log($0) + weight * log(threshold)) } ?? threshold
        current = next
        return next
    }
}
