import ArgumentParser
import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation

enum PlanAccountant: String, ExpressibleByArgument, CaseIterable, Sendable {
    case rdp, pld
}

struct PrivacyPlan: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "privacy-plan",
        abstract: "Plan a federation's privacy: ε for a noise multiplier, or the smallest noise multiplier for an ε.",
        discussion: """
            User-level DP-FedAvg: every round each agent Poisson-samples its users with probability q, clips \
            each user's update to L2 norm S and adds noise of standard deviation z·S per coordinate (agents: the \
            discrete Gaussian on the sum quantised to S/2^20, charged at integer orders with the rounding's extra \
            sensitivity — give --model or --config to plan exactly that; without them, the continuous Gaussian, \
            whose figures match dp-accounting). The accountant composes the \
            rounds in Rényi DP (Poisson-subsampled Gaussian, Mironov-Talwar-Zhang 2019, exact signed series \
            for fractional orders, dp-accounting's 156 default orders) and converts to (ε, δ) as Google's \
            dp-accounting does. δ is per user: choose it well below 1 / (number of users). Give the other \
            releases an agent makes every round to compose them too, exactly as the agent's ledger charges \
            them: the adaptive-clipping count, the alert-rate what-if counts (drift.histogram_noise_multiplier; \
            four sums, accounted at half the multiplier, subsampled like the update) and the held-out \
            evaluation (privacy.evaluation_noise_multiplier; not subsampled). With adaptive clipping the \
            update and its clip count come from one sample and are charged as one mechanism. Or read it all \
            from the configurations (--config, --agent-config): the result is the ε the agent's ledger will \
            show after that many rounds. Also prints ρ of zero-concentrated DP (no subsampling amplification).

            --accountant pld composes the same releases as privacy loss distributions instead (connect-the-dots \
            discretisation at Δ = 1e-4, FFT composition: dp-accounting's PLDAccountant, to within 1e-4 relative on its \
            reference grid) and calibrates z on that: ε is tighter (often 5–40 % lower) than the RDP conversion. The \
            agents' ledgers charge RDP, so this is the figure for planning and publication with continuous-Gaussian \
            mechanisms; for the agents' discrete releases it models each as the Gaussian at its accounted multiplier \
            and is an estimate. The RDP ε is printed beside it.

            Examples:
              aggregator privacy-plan --sampling-rate 0.01 --rounds 1000 --delta 1e-6 --noise-multiplier 1.0
              aggregator privacy-plan --sampling-rate 0.01 --rounds 1000 --delta 1e-6 --epsilon 2 --json
              aggregator privacy-plan --sampling-rate 0.5 --rounds 12 --delta 1e-6 --noise-multiplier 1 \
                --alert-rate-noise-multiplier 2 --evaluation-noise-multiplier 5
              aggregator privacy-plan --config configs/aggregator.yaml --agent-config configs/agent-1.yaml --rounds 100
              aggregator privacy-plan --accountant pld --sampling-rate 0.01 --rounds 100 --delta 1e-6 --epsilon 1
            """
    )

    @Option(name: .long, help: "An aggregator configuration: q, z, the clip-count and alert-rate noise (and rounds.max_rounds) from it.")
    var config: String?

    @Option(name: .long, help: "An agent configuration: δ, the budget and the evaluation noise from it.")
    var agentConfig: String?

    @Option(name: .long, help: "q: the probability that a user takes part in a round.")
    var samplingRate: Double?

    @Option(name: .long, help: "Rounds composed (default with --config: rounds.max_rounds).")
    var rounds: Int?

    @Option(name: .long, help: "δ (per user).")
    var delta: Double?

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

    @Option(name: .long, help: "trends.noise_multiplier: each agent's demand counts every round (composed; default with --agent-config when its trends.release is true).")
    var demandNoiseMultiplier: Double?

    @Option(name: .long, help: "The model preset (small, medium): charges the agents' discrete Gaussian on the quantised update exactly (default with --config: its model.preset; without either, the continuous Gaussian).")
    var model: String?

    @Option(name: .long, help: "Secure aggregation: the users all agents sample in one round at most (secure_aggregation.max_users, default rounds.expected_users). Plans the update's charge on the secure grid, as the agents' ledgers charge it (default with --config when secure aggregation is on; needs --model).")
    var secureMaxUsers: Int?

    @Option(name: .long, help: "rdp (what the agents' ledgers charge) or pld (privacy loss distributions: tighter; the RDP ε is shown beside it).")
    var accountant: PlanAccountant = .rdp

    @Flag(name: .long, help: "One JSON object: accountant, epsilon, noise_multiplier, delta, rounds, sampling_rate, order (RDP), epsilon_rdp, epsilon_alone, accounted_noise_multipliers, zcdp_rho (and epsilon_pld with --accountant pld, epsilon_budget with --agent-config).")
    var json = false

    /// Every setting, from the options first, then the configurations.
    private struct Settings {
        var samplingRate: Double
        var rounds: Int
        var delta: Double
        var noiseMultiplier: Double?
        var clipCountNoiseMultiplier, alertRateNoiseMultiplier, evaluationNoiseMultiplier: Double?
        var demandNoiseMultiplier: Double?
        var budget: PrivacyBudget?
        var dimension: Int?
        /// Secure aggregation: the grid's user bound and threshold (1 when not known: the smallest charge
        /// any threshold gives, so the plan never under-states what a ledger will show).
        var secure: (maxUsers: Int, threshold: Int)?
    }

    private func resolve() throws -> Settings {
        let aggregator = try config.map { try AggregatorConfiguration.load(path: $0) }
        let agent = try agentConfig.map { try EdgeAgentConfiguration.load(path: $0) }
        let h = aggregator?.rounds.hyperparameters
        func positive(_ value: Double?) -> Double? { value.flatMap { $0 > 0 ? $0 : nil } }
        guard let q = samplingRate ?? h?.samplingRate else { throw ValidationError("give --sampling-rate (or --config)") }
        let configuredRounds = aggregator.flatMap { $0.rounds.maxRounds > 0 ? $0.rounds.maxRounds : nil }
        guard let rounds = rounds ?? configuredRounds else {
            throw ValidationError("give --rounds (the configuration's rounds.max_rounds is 0: until stopped)")
        }
        guard let delta = delta ?? agent?.privacy?.delta else { throw ValidationError("give --delta (or --agent-config)") }
        let z = noiseMultiplier ?? (epsilon == nil ? h?.noiseMultiplier : nil)
        var secure: (maxUsers: Int, threshold: Int)?
        if let secureMaxUsers {
            secure = (secureMaxUsers, 1)
        } else if let aggregator, aggregator.secureAggregationEnabled, let round = try? aggregator.secureRound() {
            secure = (aggregator.secureMaxUsers, round.threshold)
        }
        return Settings(samplingRate: q, rounds: rounds, delta: delta, noiseMultiplier: z,
                        clipCountNoiseMultiplier: clipCountNoiseMultiplier ?? positive(h?.clipCountNoiseMultiplier),
                        alertRateNoiseMultiplier: alertRateNoiseMultiplier ?? positive(h?.histogramNoiseMultiplier),
                        evaluationNoiseMultiplier: evaluationNoiseMultiplier
                            ?? positive(agent?.privacy?.evaluationNoiseMultiplier),
                        demandNoiseMultiplier: demandNoiseMultiplier
                            ?? (agent?.trends.release == true ? positive(agent?.trends.noiseMultiplier) : nil),
                        budget: agent?.privacy?.budget,
                        dimension: (model ?? aggregator?.model.preset).flatMap { LSTMShape.preset(named: $0)?.layout.count },
                        secure: secure)
    }

    func validate() throws {
        if let samplingRate, !(samplingRate > 0 && samplingRate <= 1) { throw ValidationError("--sampling-rate must be in (0, 1]") }
        if let rounds, rounds < 1 { throw ValidationError("--rounds must be at least 1") }
        if let delta, !(delta > 0 && delta < 1) { throw ValidationError("--delta must be in (0, 1)") }
        guard noiseMultiplier == nil || epsilon == nil else {
            throw ValidationError("give at most one of --noise-multiplier (to get ε) or --epsilon (to get z)")
        }
        guard noiseMultiplier != nil || epsilon != nil || config != nil else {
            throw ValidationError("give --noise-multiplier (to get ε), --epsilon (to get z) or --config")
        }
        if let noiseMultiplier, noiseMultiplier <= 0 { throw ValidationError("--noise-multiplier must be positive") }
        for (option, value) in [("--clip-count-noise-multiplier", clipCountNoiseMultiplier),
                                ("--alert-rate-noise-multiplier", alertRateNoiseMultiplier),
                                ("--evaluation-noise-multiplier", evaluationNoiseMultiplier),
                                ("--demand-noise-multiplier", demandNoiseMultiplier)] {
            if let value, !(value > 0 && value.isFinite) { throw ValidationError("\(option) must be positive") }
        }
        if let epsilon, epsilon <= 0 { throw ValidationError("--epsilon must be positive") }
        if let model, LSTMShape.preset(named: model) == nil { throw ValidationError("--model must be small or medium") }
        if let secureMaxUsers {
            guard secureMaxUsers >= 1 else { throw ValidationError("--secure-max-users must be at least 1") }
            guard model != nil || config != nil else {
                throw ValidationError("--secure-max-users needs --model (the secure grid's charge depends on the parameter count)")
            }
        }
    }

    /// Every release an agent makes in a round, with update noise `z`.
    private func plan(_ z: Double, _ settings: Settings) -> RoundReleasePlan {
        // The secure grid as the aggregator would choose it for this z (an impossible grid plans nothing: ε = ∞).
        let secure = settings.secure.flatMap { secure in
            (try? DistributedRelease.bits(maxUsers: secure.maxUsers, noiseMultiplier: z)).flatMap {
                try? DistributedRelease(clipNorm: 1, noiseMultiplier: z, threshold: secure.threshold, bits: $0)
            }
        }
        return RoundReleasePlan(samplingRate: settings.samplingRate, noiseMultiplier: settings.secure != nil && secure == nil ? 0 : z,
                                clipCountNoiseMultiplier: settings.clipCountNoiseMultiplier,
                                alertRateNoiseMultiplier: settings.alertRateNoiseMultiplier,
                                evaluationNoiseMultiplier: settings.evaluationNoiseMultiplier, dimension: settings.dimension,
                                secure: secure, demandNoiseMultiplier: settings.demandNoiseMultiplier)
    }

    /// ε of the rounds of every planned release (RDP: what the ledgers charge).
    private func epsilon(_ z: Double, _ settings: Settings) -> (epsilon: Double, order: Double) {
        RDP.epsilon(rdp: plan(z, settings).rdp(rounds: settings.rounds), delta: settings.delta)
    }

    /// ε of the same releases by privacy loss distributions (+∞ when the noise is too small for a PLD).
    private func epsilonPLD(_ z: Double, _ settings: Settings) -> Double {
        (try? plan(z, settings).privacyLossDistribution(rounds: settings.rounds).epsilon(delta: settings.delta))
            ?? .infinity
    }

    /// The smallest z (to 1e-6) whose ε is at most `target` by the RDP accountant.
    private func calibrate(target: Double, _ settings: Settings) -> Double? {
        bisect(low: 1e-3, high: 1000, width: 1e-6) { epsilon($0, settings).epsilon <= target }
    }

    /// The same by PLD, searched near the RDP answer (PLD is almost always tighter) to keep the
    /// number of compositions small; every probe is a full composition.
    private func calibratePLD(target: Double, _ settings: Settings) -> Double? {
        let fits = { (z: Double) in epsilonPLD(z, settings) <= target }
        var high = calibrate(target: target, settings) ?? 1000
        while !fits(high) {
            guard high < 1000 else { return nil }
            high = min(1000, high * 1.25)
        }
        var low = high / 2
        while fits(low) {
            guard low > 1e-3 else { return low }
            high = low
            low /= 2
        }
        return bisect(low: low, high: high, width: 1e-5 * high, fits)
    }

    /// Bisection for the smallest value in [low, high] that fits (fits is monotone; high must fit).
    private func bisect(low: Double, high: Double, width: Double, _ fits: (Double) -> Bool) -> Double? {
        guard fits(high) else { return nil }
        var (low, high) = (low, high)
        while high - low > width {
            let middle = (low + high) / 2
            if fits(middle) { high = middle } else { low = middle }
        }
        return high
    }

    func run() throws {
        let settings = try resolve()
        let z: Double
        if let configured = settings.noiseMultiplier {
            guard configured > 0 else {
                throw ValidationError("the configuration's noise multiplier is 0 (NON-PRIVATE): ε = ∞")
            }
            z = configured
        } else if let epsilon {
            let calibrated = accountant == .pld ? calibratePLD(target: epsilon, settings) : calibrate(target: epsilon, settings)
            guard let calibrated else {
                throw ValidationError("no noise multiplier up to 1000 reaches ε = \(epsilon) with these settings")
            }
            z = calibrated
        } else {
            return
        }
        let (rdpEpsilon, order) = epsilon(z, settings)
        var pldEpsilon: Double?
        if accountant == .pld {
            do {
                pldEpsilon = try plan(z, settings).privacyLossDistribution(rounds: settings.rounds).epsilon(delta: settings.delta)
            } catch {
                throw ValidationError("\(error) (z = \(z)); use --accountant rdp for such noise")
            }
        }
        let value = pldEpsilon ?? rdpEpsilon
        let releases = plan(z, settings).releases(round: 1)
        let rho = plan(z, settings).zCDP(rounds: settings.rounds)
        // Each mechanism alone over the same rounds, so the operator sees where the budget goes.
        let alone = Dictionary(releases.map { release in
            let epsilon = accountant == .pld
                ? ((try? PrivacyLossDistribution.composition(of: [(release.samplingRate, release.noiseMultiplier,
                                                                    settings.rounds)]).epsilon(delta: settings.delta))
                    ?? .infinity)
                : RDP.epsilon(rdp: release.rdp.map { $0 * Double(settings.rounds) }, delta: settings.delta).epsilon
            return (release.mechanism, epsilon)
        }, uniquingKeysWith: { first, _ in first })
        let multipliers = Dictionary(releases.map { ($0.mechanism, $0.noiseMultiplier) }, uniquingKeysWith: { a, _ in a })
        if json {
            var object: [String: Any] = [
                "accountant": accountant.rawValue, "epsilon": value, "epsilon_rdp": rdpEpsilon, "noise_multiplier": z,
                "delta": settings.delta, "rounds": settings.rounds, "sampling_rate": settings.samplingRate, "order": order,
                "epsilon_alone": alone.mapValues { $0.isFinite ? $0 : Double.greatestFiniteMagnitude },
                "accounted_noise_multipliers": multipliers, "zcdp_rho": rho,
            ]
            if let pldEpsilon { object["epsilon_pld"] = pldEpsilon.isFinite ? pldEpsilon : Double.greatestFiniteMagnitude }
            if let budget = settings.budget { object["epsilon_budget"] = budget.epsilon }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            if let pldEpsilon {
                print(String(format: "q = %g, %d rounds, δ = %g, noise multiplier z = %.6f  →  ε = %.4f (PLD; RDP: %.4f at "
                             + "order %g, what the agents' ledgers charge)", settings.samplingRate, settings.rounds,
                             settings.delta, z, pldEpsilon, rdpEpsilon, order))
            } else {
                print(String(format: "q = %g, %d rounds, δ = %g, noise multiplier z = %.6f  →  ε = %.4f (RDP order %g)",
                             settings.samplingRate, settings.rounds, settings.delta, z, rdpEpsilon, order))
            }
            print(String(format: "Each round's noise per coordinate has standard deviation z·S = %.4f·S; the average's is "
                         + "z·S / (q × users).", z))
            print("Releases per round, as charged: " + releases.map {
                String(format: "%@ (q = %g, z = %.4f) ε alone = %.4f", $0.mechanism, $0.samplingRate, $0.noiseMultiplier,
                       alone[$0.mechanism] ?? 0)
            }.joined(separator: "; ") + (releases.count > 1 ? " (composed above, not added)." : "."))
            if let dimension = settings.dimension, let secure = plan(z, settings).secure {
                print("Secure aggregation: each agent adds 1/t of the discrete Gaussian noise on the grid S/2^\(secure.bits) "
                      + "(room for \(settings.secure?.maxUsers ?? 0) users per round, \(dimension) parameters); the sum "
                      + "the aggregator unmasks carries it all, charged at the accounted multiplier above, at integer "
                      + "RDP orders" + (settings.secure?.threshold == 1 ? " (at the least any threshold charges)." : "."))
            } else if let dimension = settings.dimension {
                print("The update is the discrete Gaussian on the sum quantised to S/2^\(QuantisedRelease.bits) "
                      + "(\(dimension) parameters): charged at the accounted multiplier above, at integer RDP orders.")
            } else {
                print("Continuous-Gaussian figure; the agents' exact (discrete) update noise costs slightly more: give "
                      + "--model or --config for what their ledgers charge.")
            }
            print(String(format: "zCDP: ρ = %.4f over these rounds (unamplified by subsampling; the ε above uses the "
                         + "amplification).", rho))
            if let budget = settings.budget {
                print(String(format: "The agent's budget ε = %g at δ = %g: %@", budget.epsilon, budget.delta,
                             rdpEpsilon <= budget.epsilon ? "these rounds fit (by the RDP its ledger charges)" : "these rounds do NOT fit; the agent stops releasing when the next release would exceed it"))
            }
        }
    }
}
