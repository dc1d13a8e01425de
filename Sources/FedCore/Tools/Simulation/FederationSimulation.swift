import FedIO
package import FedLogic
package import FedModel
package import FedNode
import Foundation

/// The federation in one process, with the same FedCore code the agents and the aggregator run —
/// Poisson sampling, per-user clipped updates (``LocalTraining``), Gaussian noise at each agent
/// (``GaussianNoise``), the fixed-denominator FedAvg with the server optimizer (``FederatedAveraging``)
/// and the accountant — but no sockets. It answers the operator's question before deployment: what
/// accuracy does a privacy budget cost? It also trains a centralized, non-private model with the same
/// model code on the same split, for comparison.
package struct FederationSimulation: Sendable {
    package struct Settings: Sendable {
        package var regions = 3
        package var rounds = 100
        package var samplingRate = 0.05
        package var clipNorm = 1.0
        package var learningRate = 1.0
        package var sequenceLength = 30
        package var serverLearningRate = 0.02
        /// `adam` (FedAdam) or `sgd` (FedAvgM with ``serverMomentum``).
        package var serverOptimizer = "adam"
        package var serverMomentum = 0.9
        /// Target ε over all rounds; `nil` or ∞ trains without noise.
        package var epsilon: Double?
        package var delta = 1e-6
        package var threads = 2
        /// Held-out users evaluated (a fixed, evenly spread subset).
        package var evaluationUsers = 5_000
        package var centralEpochs = 2
        package var centralLearningRate = 0.003
        package var seed: UInt64 = 1
        /// Secure aggregation across the regions: the aggregator sees only the sum, so each region adds
        /// noise of standard deviation zS/√regions and the sum carries zS, the single-curator DP-FedAvg
        /// (distributed DP, Kairouz, Liu, Steinke 2021). Off: each region adds zS to its own release.
        package var secure = false
        /// The secure-aggregation threshold t: each region adds zS/√t, so the sum of all R regions carries
        /// √(R/t)·zS (the real rounds' default t is a majority of the agents). nil: t = R.
        package var secureThreshold: Int?
        /// Calibrates z by `rdp` (what agents' ledgers charge) or `pld` (tighter; exact for these
        /// continuous-Gaussian releases).
        package var accountant = "rdp"
        /// How the aggregator combines the regions' updates (``AggregationRule``).
        package var aggregation: AggregationRule = .mean
        /// What the last `attackers` regions send instead of their honest updates; nil: every region is honest.
        package var attack: ByzantineAttack?
        package var attackers = 1
        /// The aggregator's absolute bound on one update's L2 norm; nil: S × the round's expected users.
        package var maxUpdateNorm: Double?
        /// Sampling and noise from generators seeded by ``seed`` instead of the system's CSPRNG, so that two
        /// runs differing only in the rule or the attack see the same users and the same noise. Never
        /// private: for comparing configurations only.
        package var reproducible = false
        /// Held-out accuracy every tenth of the rounds, as progress notes (off: only at the end).
        package var intermediateEvaluations = true
        package init() {}
    }

    package struct Result: Sendable, Codable {
        package var epsilon: Double
        package var delta: Double
        package var noiseMultiplier: Double
        package var hr10: Double
        package var ndcg10: Double
        package var centralHR10: Double
        package var centralNDCG10: Double
        package var users: Int
        package var rounds: Int
        package var samplingRate: Double
        package var evaluatedUsers: Int
        package var seconds: Double
        package var secure: Bool
        package var accountant: String
        package var aggregation = "mean"
        package var attack: String?
        /// With a backdoor attack: the share of held-out probes (trigger then target) where the final model
        /// ranks the target first (an honest run's share on the same probes is the base rate).
        package var backdoorSuccess: Double?
        /// Updates the aggregator's ``UpdateVerifier`` refused (attackers shrink theirs to pass).
        package var refusedUpdates = 0

        enum CodingKeys: String, CodingKey {
            case epsilon, delta, hr10, ndcg10, users, rounds, seconds, secure, accountant, aggregation, attack
            case backdoorSuccess = "backdoor_success", refusedUpdates = "refused_updates"
            case noiseMultiplier = "noise_multiplier", centralHR10 = "central_hr10", centralNDCG10 = "central_ndcg10"
            case samplingRate = "sampling_rate", evaluatedUsers = "evaluated_users"
        }
    }

    package var settings: Settings
    package var shape: LSTMShape
    package var outOfVocabulary: Int32

    package init(settings: Settings, shape: LSTMShape, outOfVocabulary: Int32) {
        self.settings = settings
        self.shape = shape
        self.outOfVocabulary = outOfVocabulary
    }

    /// The split every method sees: each user's most recent event is held out; training uses the
    /// `sequenceLength` events before it. Evaluation uses a fixed, evenly spread subset of users.
    package func split(_ users: [EventSequence]) -> (training: [EventSequence], evaluation: [EventSequence]) {
        let L = settings.sequenceLength
        var training: [EventSequence] = []
        training.reserveCapacity(users.count)
        for user in users where user.count >= 3 {
            let prefix = EventSequence(categories: Array(user.categories.dropLast().suffix(L)),
                                       actions: Array(user.actions.dropLast().suffix(L)),
                                       gaps: Array(user.gaps.dropLast().suffix(L)))
            training.append(prefix)
        }
        let evaluable = users.filter {
            $0.count >= 3 && NextCategoryEvaluation.isEvaluable($0, outOfVocabulary: outOfVocabulary)
        }
        let step = max(1, evaluable.count / max(1, settings.evaluationUsers))
        let evaluation = stride(from: 0, to: evaluable.count, by: step).prefix(settings.evaluationUsers).map { index in
            let user = evaluable[index]
            return EventSequence(categories: Array(user.categories.suffix(L + 1)), actions: Array(user.actions.suffix(L + 1)),
                                 gaps: Array(user.gaps.suffix(L + 1)))
        }
        return (training, evaluation)
    }

    /// The noise standard deviation each region adds: the whole zS when every region's release must be
    /// private on its own; zS/√regions under secure aggregation, so that the sum the aggregator sees
    /// carries exactly zS (independent Gaussians add their variances).
    package static func regionNoise(noiseMultiplier z: Double, clipNorm: Double, regions: Int, secure: Bool,
                                    threshold: Int? = nil) -> Double {
        z * clipNorm / (secure ? Double(max(1, threshold ?? regions)).squareRoot() : 1)
    }

    /// Runs the federation and the centralized baseline on `users` (each a whole time-ordered sequence).
    ///
    /// - Parameter progress: counts the rounds (then the central model's batches); the set-up and each
    ///   tenth round's held-out HR@10 and NDCG@10 are notes above the bar.
    package func run(users: [EventSequence], central: NextCategoryEvaluation? = nil,
                     progress: ProgressReporter = .silent) -> (result: Result, central: NextCategoryEvaluation) {
        let started = ContinuousClock.now
        let (training, evaluation) = split(users)
        let regions = (0..<settings.regions).map { region in
            stride(from: region, to: training.count, by: settings.regions).map { training[$0] }
        }
        let q = settings.samplingRate
        let epsilon = settings.epsilon ?? .infinity
        let pld = settings.accountant == "pld"
        let z: Double = !epsilon.isFinite ? 0
            : pld ? PrivacyLossDistribution.calibrate(samplingRate: q, rounds: settings.rounds, delta: settings.delta,
                                                      targetEpsilon: epsilon) ?? 1000
            : RDP.calibrate(q: q, rounds: settings.rounds, delta: settings.delta, targetEpsilon: epsilon) ?? 1000
        let regionSigma = Self.regionNoise(noiseMultiplier: z, clipNorm: settings.clipNorm, regions: settings.regions,
                                           secure: settings.secure, threshold: settings.secureThreshold)
        progress.note(String(format: "%d users (%d evaluated), %d regions, q = %g, %d rounds, ε = %@ (%@) → z = %.4f; "
                        + "noise per region %.4f·S%@",
                        training.count, evaluation.count, settings.regions, q, settings.rounds,
                        epsilon.isFinite ? String(format: "%g", epsilon) : "∞", pld ? "PLD" : "RDP", z,
                        regionSigma / settings.clipNorm, settings.secure ? " (secure aggregation: the sum carries z·S)" : ""))
        let hyperparameters = RoundHyperparameters(
            samplingRate: q, clipNorm: settings.clipNorm, noiseMultiplier: z, learningRate: settings.learningRate,
            localSteps: 1, sequenceLength: UInt32(settings.sequenceLength))
        let local = LocalTraining(hyperparameters: hyperparameters, threads: settings.threads)
        var averaging = FederatedAveraging(
            denominator: z > 0 ? .fixed(q * Double(training.count)) : .contributingUsers,
            serverOptimizer: settings.serverOptimizer == "sgd"
                ? SGD(learningRate: settings.serverLearningRate, momentum: settings.serverMomentum)
                : Adam(learningRate: settings.serverLearningRate),
            rule: settings.aggregation)
        var parameters = LSTMParameters<Float>(shape: shape, seed: settings.seed)
        var sampler = SimulationRandom(seed: settings.reproducible ? settings.seed : nil)
        var noise = GaussianNoise(generator: SimulationRandom(seed: settings.reproducible ? settings.seed &+ 1 : nil))
        // The aggregator's checks, as the real rounds make them: S per declared user, an absolute bound,
        // and no agent declaring more users than the whole population.
        let verifier = UpdateVerifier(parameterCount: parameters.values.count,
                                      maxNorm: settings.maxUpdateNorm ?? settings.clipNorm * q * Double(training.count),
                                      clipNorm: settings.clipNorm, maxUsers: training.count)
        let attackers = settings.attack == nil ? 0 : min(settings.attackers, settings.regions)
        let backdoor = Self.backdoorPair(training, outOfVocabulary: outOfVocabulary)
        var refused = 0
        if let attack = settings.attack {
            progress.note("\(attackers) of \(settings.regions) regions attack: \(attack)"
                          + (attack.isBackdoor ? " (trigger category \(backdoor.trigger) → target \(backdoor.target))" : "")
                          + "; aggregation: \(settings.aggregation)")
        }
        progress.begin("rounds (ε = \(epsilon.isFinite ? String(format: "%g", epsilon) : "∞"))", total: settings.rounds,
                       unit: "rounds")
        for round in 1...settings.rounds {
            var updates: [ModelUpdate] = []
            for (index, region) in regions.enumerated() {
                let sampled = local.sample(region, random: &sampler)
                let attacking = index >= settings.regions - attackers ? settings.attack : nil
                var training = sampled
                if case .backdoor = attacking {
                    training = sampled.map { ByzantineAttack.poisoned($0, trigger: backdoor.trigger, target: backdoor.target) }
                }
                let result = local.run(global: parameters, users: training)
                var values = noise.noised(result.deltaSum, sigma: regionSigma), users = result.sampledUsers
                if let attacking { (values, users) = attacking.forged(values, users: users, verifier: verifier) }
                let update = ModelUpdate(agentID: "region-\(index)", round: UInt64(round), deltaSum: values, users: users)
                do throws(UpdateRejection) {
                    try verifier.verify(update)
                    updates.append(update)
                } catch {
                    refused += 1
                }
            }
            averaging.apply(updates, to: &parameters.values)
            if settings.intermediateEvaluations, round % max(1, settings.rounds / 10) == 0 || round == settings.rounds {
                let measured = NextCategoryEvaluation.evaluate(parameters: parameters, sequences: evaluation,
                                                               outOfVocabulary: outOfVocabulary)
                progress.note(String(format: "  round %d: HR@10 %.4f  NDCG@10 %.4f", round, measured.hr10,
                                     measured.ndcg10))
            }
            progress.advance()
        }
        progress.finish()
        let federated = NextCategoryEvaluation.evaluate(parameters: parameters, sequences: evaluation,
                                                        outOfVocabulary: outOfVocabulary)
        let backdoorSuccess: Double? = settings.attack?.isBackdoor != true ? nil
            : NextCategoryEvaluation.evaluate(
                parameters: parameters, sequences: ByzantineAttack.probes(evaluation, trigger: backdoor.trigger,
                                                                          target: backdoor.target),
                outOfVocabulary: outOfVocabulary).hr1
        let baseline = central ?? (settings.centralEpochs == 0 ? NextCategoryEvaluation()
            : trainCentral(training: training, evaluation: evaluation, progress: progress))
        let spent = z <= 0 ? .infinity
            : pld ? ((try? PrivacyLossDistribution.subsampledGaussian(samplingRate: q, noiseMultiplier: z)
                        .selfComposed(settings.rounds).epsilon(delta: settings.delta)) ?? .infinity)
            : RDP.epsilon(q: q, noiseMultiplier: z, rounds: settings.rounds, delta: settings.delta).epsilon
        return (Result(epsilon: spent, delta: settings.delta, noiseMultiplier: z, hr10: federated.hr10,
                       ndcg10: federated.ndcg10, centralHR10: baseline.hr10, centralNDCG10: baseline.ndcg10,
                       users: training.count, rounds: settings.rounds, samplingRate: q,
                       evaluatedUsers: federated.users, seconds: (ContinuousClock.now - started).inSeconds,
                       secure: settings.secure, accountant: settings.accountant,
                       aggregation: settings.aggregation.description, attack: settings.attack?.description,
                       backdoorSuccess: backdoorSuccess, refusedUpdates: refused),
                baseline)
    }

    /// The backdoor's trigger and target: the most frequent training category and one of median
    /// frequency, so that the trigger is common and the target rarely follows it by itself.
    package static func backdoorPair(_ training: [EventSequence], outOfVocabulary: Int32) -> (trigger: Int32, target: Int32) {
        var counts: [Int32: Int] = [:]
        for sequence in training { for category in sequence.categories where category != outOfVocabulary { counts[category, default: 0] += 1 } }
        let ranked = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map(\.key)
        guard ranked.count >= 2 else { return (0, 1) }
        return (ranked[0], ranked[ranked.count / 2])
    }

    /// The centralized, non-private model: the same LSTM code, mini-batch Adam over every training
    /// sequence for `centralEpochs` epochs, evaluated on the same held-out events.
    package func trainCentral(training: [EventSequence], evaluation: [EventSequence],
                              progress: ProgressReporter = .silent) -> NextCategoryEvaluation {
        let parameters = trainCentralModel(training: training, evaluation: evaluation, progress: progress)
        return NextCategoryEvaluation.evaluate(parameters: parameters, sequences: evaluation,
                                               outOfVocabulary: outOfVocabulary)
    }

    /// The centrally trained parameters (see ``trainCentral(training:evaluation:progress:)``).
    ///
    /// - Parameter progress: counts the mini-batches of every epoch; each epoch's held-out HR@10 and
    ///   NDCG@10 (with `evaluation`) are notes above the bar.
    package func trainCentralModel(training: [EventSequence], evaluation: [EventSequence] = [],
                                   progress: ProgressReporter = .silent) -> LSTMParameters<Float> {
        var parameters = LSTMParameters<Float>(shape: shape, seed: settings.seed)
        var optimizer = Adam(learningRate: settings.centralLearningRate)
        let trainer = ParallelTrainer<Float>(shape: shape, threads: settings.threads)
        var order = Array(training.indices)
        var random = SplitMix64(seed: settings.seed)
        var gradient: [Float] = []
        let batches = (order.count + 63) / 64
        progress.begin("central model", total: batches * settings.centralEpochs, unit: "batches")
        for epoch in 1...settings.centralEpochs {
            order.shuffle(using: &random)
            for start in stride(from: 0, to: order.count, by: 64) {
                let batch = order[start..<min(start + 64, order.count)].map { training[$0] }
                trainer.gradient(parameters: parameters, sequences: batch, into: &gradient)
                optimizer.step(&parameters.values, gradient: gradient)
                progress.advance()
            }
            guard !evaluation.isEmpty else { continue }
            let measured = NextCategoryEvaluation.evaluate(parameters: parameters, sequences: evaluation,
                                                           outOfVocabulary: outOfVocabulary)
            progress.note(String(format: "  central epoch %d: HR@10 %.4f  NDCG@10 %.4f", epoch, measured.hr10,
                                 measured.ndcg10))
        }
        progress.finish()
        return parameters
    }
}

