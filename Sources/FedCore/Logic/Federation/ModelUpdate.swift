import FedModel

/// One agent's contribution to a round, after the envelope was opened: the sum of its users'
/// clipped model deltas (plus the agent's DP noise when privacy is on), flattened in
/// ``ParameterLayout`` order.
package struct ModelUpdate: Sendable, Equatable {
    package var agentID: String
    package var round: UInt64
    /// Σ over the agent's sampled users of their clipped deltas (θ_local − θ_global).
    package var deltaSum: [Float]
    /// Users whose deltas are in the sum (for plain FedAvg weighting; DP uses a fixed denominator).
    package var users: Int
    /// Adaptive clipping: the agent's noisy count of sampled users within the clip norm.
    package var clipCount: Double

    package init(agentID: String, round: UInt64, deltaSum: [Float], users: Int, clipCount: Double = 0) {
        self.agentID = agentID
        self.round = round
        self.deltaSum = deltaSum
        self.users = users
        self.clipCount = clipCount
    }
}

/// Why an update was refused. Counted by ``reason``; a refusal never stops the round.
package enum UpdateRejection: Error, Equatable, Sendable, CustomStringConvertible {
    case wrongRound(expected: UInt64, found: UInt64)
    case noRoundOpen
    case duplicate(agentID: String)
    case unknownAgent(String)
    case wrongSize(expected: Int, found: Int)
    case nonFinite(index: Int)
    case normTooLarge(norm: Double, bound: Double)
    case invalidUserCount(Int)
    /// No verified ledger receipt from this agent for the round (private federations require one).
    case missingReceipt(agentID: String)
    /// A plain update in a round that runs with secure aggregation (only the masked sum is accepted).
    case secureRound

    package var reason: String {
        switch self {
        case .wrongRound: "wrong_round"
        case .noRoundOpen: "no_round_open"
        case .duplicate: "duplicate"
        case .unknownAgent: "unknown_agent"
        case .wrongSize: "wrong_size"
        case .nonFinite: "non_finite"
        case .normTooLarge: "norm_too_large"
        case .invalidUserCount: "invalid_user_count"
        case .missingReceipt: "no_ledger_receipt"
        case .secureRound: "plain_update_in_secure_round"
        }
    }

    package var description: String {
        switch self {
        case let .wrongRound(expected, found): "update for round \(found) while round \(expected) is open (late or replayed)"
        case .noRoundOpen: "no round is open"
        case .secureRound: "this round runs with secure aggregation: send the masked update, not a plain one"
        case let .missingReceipt(agent): "agent '\(agent)' sent no verified privacy-ledger receipt for this round"
        case let .duplicate(agent): "agent '\(agent)' already submitted in this round"
        case let .unknownAgent(agent): "agent '\(agent)' is not enrolled"
        case let .wrongSize(expected, found): "update has \(found) values, the model has \(expected)"
        case let .nonFinite(index): "update value \(index) is NaN or infinite"
        case let .normTooLarge(norm, bound): "update L2 norm \(norm) exceeds the agent bound \(bound)"
        case let .invalidUserCount(count): "invalid user count \(count) (negative, or more than all agents may sample in a round)"
        }
    }
}

/// Checks an update before it may touch the model: size, finiteness, and an L2 bound on the
/// agent's whole contribution (its users' clipped deltas sum to at most users × S, plus noise slack).
package struct UpdateVerifier: Sendable {
    package var parameterCount: Int
    /// The largest L2 norm accepted for one agent's delta sum.
    package var maxNorm: Double
    /// The per-user clip bound S: an update declaring `users` > 0 must have norm ≤ users·S (each of its
    /// users' deltas was clipped to S). `nil` checks only ``maxNorm``.
    package var clipNorm: Double?
    /// The most users one agent's update may declare: the users all agents together may sample in a
    /// round (``RoundCoordinator``'s `maxUsers`). A larger count — the FedAvg divisor when not noised —
    /// could only come from an agent that lies.
    package var maxUsers: Int

    package init(parameterCount: Int, maxNorm: Double, clipNorm: Double? = nil, maxUsers: Int = .max) {
        precondition(parameterCount > 0 && maxNorm > 0)
        self.parameterCount = parameterCount
        self.maxNorm = maxNorm
        self.clipNorm = clipNorm
        self.maxUsers = maxUsers
    }

    /// The bound for an update declaring `users` users (float32 rounding allowed for).
    package func bound(users: Int) -> Double {
        guard let clipNorm, users > 0 else { return maxNorm }
        return min(maxNorm, clipNorm * Double(users) * (1 + 1e-4))
    }

    package func verify(_ update: ModelUpdate) throws(UpdateRejection) {
        guard update.deltaSum.count == parameterCount else {
            throw .wrongSize(expected: parameterCount, found: update.deltaSum.count)
        }
        guard update.users >= 0, update.users <= maxUsers else { throw .invalidUserCount(update.users) }
        var squares = 0.0
        for (index, value) in update.deltaSum.enumerated() {
            guard value.isFinite else { throw .nonFinite(index: index) }
            squares += Double(value) * Double(value)
        }
        let norm = squares.squareRoot(), bound = bound(users: update.users)
        guard norm <= bound else { throw .normTooLarge(norm: norm, bound: bound) }
    }
}
