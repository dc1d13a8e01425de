import ArgumentParser
import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation

struct PrivacyPlan: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "privacy-plan",
        abstract: "Plan a federation's privacy: ε for a noise multiplier, or the smallest noise multiplier for an ε.",
        discussion: """
            User-level DP-FedAvg: every round each agent Poisson-samples its users with probability q, clips \
            each user's update to L2 norm S and adds N(0, z²S²) per coordinate. The accountant composes the \
            rounds in Rényi DP (Poisson-subsampled Gaussian, Mironov-Talwar-Zhang 2019, exact signed series \
            for fractional orders, dp-accounting's 156 default orders) and converts to (ε, δ) as Google's \
            dp-accounting does. δ is per user: choose it well below 1 / (number of users). Give the other \
            releases an agent makes every round to compose them too, exactly as the agent's ledger charges \
            them: the adaptive-clipping count, the alert-rate what-if counts (drift.histogram_noise_multiplier; \
            four sums, accounted at half the multiplier, subsampled like the update) and the held-out \
            evaluation (privacy.evaluation_noise_multiplier; not subsampled).

            Examples:
              aggregator privacy-plan --sampling-rate 0.01 --rounds 1000 --delta 1e-6 --noise-multiplier 1.0
              aggregator privacy-plan --sampling-rate 0.01 --rounds 1000 --delta 1e-6 --epsilon 2 --json
              aggregator privacy-plan --sampling-rate 0.5 --rounds 12 --delta 1e-6 --noise-multiplier 1 \
                --alert-rate-noise-multiplier 2 --evaluation-noise-multiplier 5
            """
    )

    @Option(name: .long, help: "q: the probability that a user takes part in a round.")
    var samplingRate: Double

    @Option(name: .long, help: "Rounds composed.")
    var rounds: Int

    @Option(name: .long, help: "δ (per user).")
    var delta: Double

    @Option(name: .long, help: "z: noise standard deviation ÷ clip norm. Prints ε.")
    var noiseMultiplier: Double?

    @Option(name: .long, help: "Target ε. Prints the smallest z reaching it.")
    var epsilon: Double?

    @Option(name: .long, help: "Adaptive clipping: noise multiplier of the per-round clip count (composed with the updates).")
    var clipCountNoiseMultiplier: Double?

    @Option(name: .long, help: "drift.histogram_noise_multiplier: each agent's alert-rate what-if release every round (composed).")
    var alertRateNoiseMultiplier: Double?

    @Option(name: .long, help: "privacy.evaluation_noise_multiplier: each agent's held-out evaluation every round (composed).")
    var evaluationNoiseMultiplier: Double?

    @Flag(name: .long, help: "One JSON object: epsilon, noise_multiplier, delta, rounds, sampling_rate, order.")
    var json = false

    func validate() throws {
        guard samplingRate > 0, samplingRate <= 1 else { throw ValidationError("--sampling-rate must be in (0, 1]") }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
        guard delta > 0, delta < 1 else { throw ValidationError("--delta must be in (0, 1)") }
        guard (noiseMultiplier == nil) != (epsilon == nil) else {
            throw ValidationError("give exactly one of --noise-multiplier (to get ε) or --epsilon (to get z)")
        }
        if let noiseMultiplier, noiseMultiplier <= 0 { throw ValidationError("--noise-multiplier must be positive") }
        for (option, value) in [("--clip-count-noise-multiplier", clipCountNoiseMultiplier),
                                ("--alert-rate-noise-multiplier", alertRateNoiseMultiplier),
                                ("--evaluation-noise-multiplier", evaluationNoiseMultiplier)] {
            if let value, !(value > 0 && value.isFinite) { throw ValidationError("\(option) must be positive") }
        }
        if let epsilon, epsilon <= 0 { throw ValidationError("--epsilon must be positive") }
    }

    /// Every release an agent makes in a round, with update noise `z`.
    private func plan(_ z: Double) -> RoundReleasePlan {
        RoundReleasePlan(samplingRate: samplingRate, noiseMultiplier: z, clipCountNoiseMultiplier: clipCountNoiseMultiplier,
                         alertRateNoiseMultiplier: alertRateNoiseMultiplier,
                         evaluationNoiseMultiplier: evaluationNoiseMultiplier)
    }

    /// ε of `rounds` rounds of every planned release.
    private func epsilon(_ z: Double) -> (epsilon: Double, order: Double) {
        RDP.epsilon(rdp: plan(z).rdp(rounds: rounds), delta: delta)
    }

    private var composesOthers: Bool {
        clipCountNoiseMultiplier != nil || alertRateNoiseMultiplier != nil || evaluationNoiseMultiplier != nil
    }

    private func calibrate(target: Double) -> Double? {
        guard composesOthers else {
            return RDP.calibrate(q: samplingRate, rounds: rounds, delta: delta, targetEpsilon: target, tolerance: 1e-6)
        }
        var low = 1e-3, high = 1000.0
        guard epsilon(high).epsilon <= target else { return nil }
        while high - low > 1e-6 {
            let middle = (low + high) / 2
            if epsilon(middle).epsilon <= target { high = middle } else { low = middle }
        }
        return high
    }

    func run() throws {
        let z: Double
        if let noiseMultiplier {
            z = noiseMultiplier
        } else if let epsilon {
            guard let calibrated = calibrate(target: epsilon) else {
                throw ValidationError("no noise multiplier up to 1000 reaches ε = \(epsilon) with these settings")
            }
            z = calibrated
        } else {
            return
        }
        let (value, order) = epsilon(z)
        // Each mechanism alone over the same rounds, so the operator sees where the budget goes.
        let alone = Dictionary(plan(z).releases(round: 1).map { release in
            (release.mechanism, RDP.epsilon(rdp: release.rdp.map { $0 * Double(rounds) }, delta: delta).epsilon)
        }, uniquingKeysWith: { first, _ in first })
        if json {
            let object: [String: Any] = ["epsilon": value, "noise_multiplier": z, "delta": delta, "rounds": rounds,
                                         "sampling_rate": samplingRate, "order": order, "epsilon_alone": alone]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(String(format: "q = %g, %d rounds, δ = %g, noise multiplier z = %.6f  →  ε = %.4f (RDP order %g)",
                         samplingRate, rounds, delta, z, value, order))
            print(String(format: "Each round's noise per coordinate has standard deviation z·S = %.4f·S; the average's is "
                         + "z·S / (q × users).", z))
            if alone.count > 1 {
                print("Each release alone over these rounds: " + alone.keys.sorted().map {
                    String(format: "%@ ε = %.4f", $0, alone[$0] ?? 0)
                }.joined(separator: ", ") + " (composed above, not added).")
            }
        }
    }
}
