import FedModel

/// How the aggregator combines the agents' updates of a round, coordinate by coordinate.
///
/// `mean` is FedAvg: one agent's update moves the model as far as its norm bound lets it, so a single
/// enrolled agent that lies (a scaled, sign-flipped or backdoor update) steers the federation. The
/// robust rules (Yin et al. 2018, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical
/// Rates") bound what any one agent can do: the coordinate-wise trimmed mean drops the `trim` largest and
/// `trim` smallest values of every coordinate before averaging, the coordinate-wise median keeps the middle.
///
/// Both need each agent's update, so they cannot run under secure aggregation (which reveals only the
/// sum); the configuration refuses the combination. With differential privacy each agent's update is
/// already private on its own (clipped and noised at the agent), so any rule is post-processing and
/// spends no budget.
package enum AggregationRule: Sendable, Equatable, CustomStringConvertible {
    case mean
    /// Drop the `trim` largest and `trim` smallest of each coordinate. When a round has too few updates
    /// for that (n ≤ 2·trim), it trims (n − 1)/2 from each side, which is the median.
    case trimmedMean(trim: Int)
    case median

    package var isRobust: Bool { self != .mean }

    package var description: String {
        switch self {
        case .mean: "mean"
        case .trimmedMean(let trim): "trimmed_mean (trim \(trim))"
        case .median: "median"
        }
    }

    /// Parses the configuration's `rule` and `trim`.
    package init?(rule: String, trim: Int) {
        switch rule {
        case "mean": self = .mean
        case "median": self = .median
        case "trimmed_mean" where trim >= 1: self = .trimmedMean(trim: trim)
        default: return nil
        }
    }

    /// Values dropped from each side of a coordinate with `n` updates.
    package func trimmed(of n: Int) -> Int {
        switch self {
        case .mean: 0
        case .trimmedMean(let trim): min(trim, (n - 1) / 2)
        case .median: (n - 1) / 2
        }
    }

    /// The rule's centre of `vectors` (each `count` long) for every coordinate: their mean, trimmed mean
    /// or median (for an even count, the mean of the two middle values).
    package func centre(_ vectors: [[Float]], count: Int) -> [Double] {
        let n = vectors.count
        guard n > 0 else { return [Double](repeating: 0, count: count) }
        for vector in vectors { precondition(vector.count == count, "every vector must hold count values") }
        var result = [Double](repeating: 0, count: count)
        let drop = trimmed(of: n)
        if case .median = self {
            var column = [Float](repeating: 0, count: n)
            for index in 0..<count {
                for a in 0..<n { column[a] = vectors[a][index] }
                column.sort()
                result[index] = n % 2 == 1 ? Double(column[n / 2])
                    : (Double(column[n / 2 - 1]) + Double(column[n / 2])) / 2
            }
            return result
        }
        if drop == 0 {
            let sum = FastMath.sum(vectors, count: count)
            return sum.map { $0 / Double(n) }
        }
        var column = [Float](repeating: 0, count: n)
        let kept = Double(n - 2 * drop)
        for index in 0..<count {
            for a in 0..<n { column[a] = vectors[a][index] }
            column.sort()
            var sum = 0.0
            for k in drop..<(n - drop) { sum += Double(column[k]) }
            result[index] = sum / kept
        }
        return result
    }
}
