import FedIO
package import FedLogic
package import FedModel

/// What a Byzantine agent sends in the federation simulator instead of its honest update — enrolled,
/// with a valid key and a plausible user count, so that only the aggregation rule can stop it.
///
/// Each attack declares as many users as its vector needs to pass the per-user norm bound (at most the
/// verifier's `maxUsers`) and is shrunk, if still needed, to the verifier's absolute bound: the attacker
/// uses all the room the per-agent norm bound leaves.
package enum ByzantineAttack: Sendable, Equatable, CustomStringConvertible {
    /// The honest update × `factor`.
    case scaled(Double)
    /// The honest update × −`factor`: gradient ascent on the shared objective.
    case signFlip(Double)
    /// A targeted backdoor (Bagdasaryan et al. 2020, model replacement): the agent trains on its users'
    /// sequences rewritten to alternate a trigger category and a target category, and boosts the
    /// resulting update × `boost`. Success: the model ranks the target first after the trigger.
    case backdoor(boost: Double)

    package var isBackdoor: Bool {
        if case .backdoor = self { true } else { false }
    }

    package var description: String {
        switch self {
        case .scaled(let factor): "scaled ×\(factor)"
        case .signFlip(let factor): "sign-flipped ×\(factor)"
        case .backdoor(let boost): "backdoor boosted ×\(boost)"
        }
    }

    /// Parses `scaled:F`, `sign-flip:F` or `backdoor:F` (F defaults to 10).
    package init?(_ text: String) {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        let factor = parts.count == 2 ? Double(parts[1]) : 10
        guard let factor, factor.isFinite, factor > 0 else { return nil }
        switch parts[0] {
        case "scaled": self = .scaled(factor)
        case "sign-flip": self = .signFlip(factor)
        case "backdoor": self = .backdoor(boost: factor)
        default: return nil
        }
    }

    /// The backdoor's training data: `sequence` with its categories replaced by trigger, target, trigger, …
    package static func poisoned(_ sequence: EventSequence, trigger: Int32, target: Int32) -> EventSequence {
        var copy = sequence
        for index in copy.categories.indices { copy.categories[index] = index % 2 == 0 ? trigger : target }
        return copy
    }

    /// Held-out probes of the backdoor: each evaluation sequence with its last two events rewritten to
    /// (trigger, target), skipping sequences that already end so. Top-1 hits on them are backdoor successes.
    package static func probes(_ evaluation: [EventSequence], trigger: Int32, target: Int32) -> [EventSequence] {
        evaluation.compactMap { sequence in
            guard sequence.count >= 3 else { return nil }
            var copy = sequence
            let n = copy.count
            guard !(copy.categories[n - 2] == trigger && copy.categories[n - 1] == target) else { return nil }
            copy.categories[n - 2] = trigger
            copy.categories[n - 1] = target
            return copy
        }
    }

    /// The factor the attack multiplies its (honest or poisoned) update by.
    package var factor: Double {
        switch self {
        case .scaled(let factor): factor
        case .signFlip(let factor): -factor
        case .backdoor(let boost): boost
        }
    }

    /// The update the attacker sends for its `update` (of `users` users): × ``factor``, with the user count
    /// that lets it pass `verifier`.
    package func forged(_ update: [Float], users: Int, verifier: UpdateVerifier) -> (deltaSum: [Float], users: Int) {
        let norm = update.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() * abs(factor)
        let needed = verifier.clipNorm.map { norm / $0 } ?? 0
        let declared = needed.isFinite ? min(verifier.maxUsers, max(users, Int(needed.rounded(.up)))) : users
        return (Self.scaled(update, by: factor, within: verifier.bound(users: declared)), declared)
    }

    /// `vector` × `factor`, shrunk to `bound` when longer.
    package static func scaled(_ vector: [Float], by factor: Double, within bound: Double) -> [Float] {
        let norm = vector.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() * abs(factor)
        let scale = norm > bound && norm > 0 ? factor * bound / norm * (1 - 1e-6) : factor
        return vector.map { Float(Double($0) * scale) }
    }
}

/// The simulator's randomness: the system's CSPRNG, or a seeded generator when runs must be
/// reproducible (``FederationSimulation/Settings/reproducible``).
struct SimulationRandom: RandomNumberGenerator {
    private var seeded: SplitMix64?
    private var system = SodiumRandom()

    init(seed: UInt64?) { seeded = seed.map { SplitMix64(seed: $0) } }

    mutating func next() -> UInt64 {
        guard var generator = seeded else { return system.next() }
        defer { seeded = generator }
        return generator.next()
    }
}
