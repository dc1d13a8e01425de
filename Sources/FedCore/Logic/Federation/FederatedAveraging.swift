package import FedModel

/// FedAvg with a server optimizer (Reddi et al. 2021, "Adaptive Federated Optimization").
///
/// The round's pseudo-gradient is −(Σ_agents deltaSum) / denominator. With differential privacy the
/// denominator is fixed in advance (q × all users of all agents), so that no single user's presence
/// changes it — the sum is the only data-dependent quantity, and it is already clipped and noised.
/// Without privacy it is the number of users that actually contributed (the weighted average).
/// The server optimizer then applies the pseudo-gradient: SGD with learning rate 1 and no momentum is
/// plain FedAvg; momentum or Adam give FedAvgM / FedAdam.
///
/// With a robust ``AggregationRule`` the sum is estimated as n × the rule's coordinate-wise centre of the
/// n agents' delta sums (fixed denominator), or the centre of the agents' per-user means Σ/users
/// (contributing users), so that no one agent can move a coordinate further than the honest spread.
package struct FederatedAveraging: Sendable {
    package enum Denominator: Sendable, Equatable {
        /// Expected participating users (DP): q × total users.
        case fixed(Double)
        /// Users that contributed this round (non-private weighted average).
        case contributingUsers
    }

    package var denominator: Denominator
    package var serverOptimizer: any Optimizer
    package var rule: AggregationRule

    package init(denominator: Denominator, serverOptimizer: any Optimizer = SGD(learningRate: 1),
                 rule: AggregationRule = .mean) {
        self.denominator = denominator
        self.serverOptimizer = serverOptimizer
        self.rule = rule
    }

    /// The average delta of `updates` (all verified, same length).
    package func averageDelta(_ updates: [ModelUpdate], parameterCount: Int) -> [Float] {
        if rule.isRobust { return robustDelta(updates, parameterCount: parameterCount) }
        let sum = FastMath.sum(updates.map(\.deltaSum), count: parameterCount)
        let divisor: Double
        switch denominator {
        case .fixed(let value): divisor = value
        case .contributingUsers: divisor = Double(updates.reduce(0) { $0 + $1.users })
        }
        guard divisor > 0 else { return [Float](repeating: 0, count: parameterCount) }
        return sum.map { Float($0 / divisor) }
    }

    private func robustDelta(_ updates: [ModelUpdate], parameterCount: Int) -> [Float] {
        switch denominator {
        case .fixed(let divisor):
            guard divisor > 0 else { return [Float](repeating: 0, count: parameterCount) }
            let scale = Double(updates.count) / divisor
            return rule.centre(updates.map(\.deltaSum), count: parameterCount).map { Float($0 * scale) }
        case .contributingUsers:
            // Each agent's mean delta per user; agents without users have none to offer.
            let means = updates.filter { $0.users > 0 }.map { update in
                let users = Float(update.users)
                return update.deltaSum.map { $0 / users }
            }
            guard !means.isEmpty else { return [Float](repeating: 0, count: parameterCount) }
            return rule.centre(means, count: parameterCount).map { Float($0) }
        }
    }

    /// Applies the round to the global parameters through the server optimizer.
    package mutating func apply(_ updates: [ModelUpdate], to parameters: inout [Float]) {
        let delta = averageDelta(updates, parameterCount: parameters.count)
        serverOptimizer.step(&parameters, gradient: delta.map { -$0 })
    }
}
