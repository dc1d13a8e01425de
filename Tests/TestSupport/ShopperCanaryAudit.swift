import FedIO
package import FedLogic
import FedModel
package import FedNode
package import Foundation

/// A one-run privacy audit whose canaries are real shoppers of a real agent (Andrew et al. 2024's canary
/// clients, scored by the aggregator-as-adversary; Steinke, Nasr, Jagielski 2023's one-run bound).
///
/// m canary shoppers are made, each viewing only its own category (so its clipped update lives mostly on
/// that category's embedding and output rows). The auditor flips a fair coin per canary: *included*
/// canaries are written into the agent's SQLite store beside background shoppers, excluded ones are not.
/// Then one real round runs through the agent's ``StoreRoundWorker`` — Poisson sampling from the CSPRNG,
/// local training, clipping, noise, the ledger's charge — and the release is sealed, signed, opened and
/// decoded as the aggregator would. The adversary knows every canary's events and the global model, so it
/// computes each canary's own update direction u_c (restricted to the canary's category rows) and scores
/// s_c = ⟨release, u_c⟩.
///
/// Two statistics of the same run:
/// - **Lower bound (rigorous).** Guess "included" for the k highest scores. If the release is (ε, δ)-DP,
///   the number of correct guesses is dominated by Binomial(k, e^ε/(1+e^ε)) up to m·δ (their Thm 3.1); the
///   largest ε the observed count rejects at level β (Bonferroni over the k tried, m·δ subtracted) is a lower
///   bound on the true ε, exceeding the accountant's ε with probability ≤ β if the accountant is right.
/// - **Gaussian estimate (Andrew et al. 2024).** μ̂ = (mean of included scores − mean of excluded) / (sd
///   of excluded), and ε̂ the ε at δ of μ̂-Gaussian DP. It tracks the noise actually present, so it has
///   power close to the claim (it is an estimate, not a bound; its spread is reported).
package struct ShopperCanaryAudit: Sendable {
    package struct Settings: Sendable {
        package var canaries = 4_000
        package var backgroundShoppers = 200
        package var samplingRate = 0.5
        package var noiseMultiplier = 2.0
        package var clipNorm = 1.0
        /// Local step size: large, so every canary's unclipped update is far above S and clipping bites.
        package var learningRate = 20.0
        package var delta = 1e-6
        /// Level of the rigorous lower bound (its false-failure probability when the mechanism is right).
        package var beta = 0.01
        /// Numbers of top-scored canaries guessed "included" (each at β / count, Bonferroni).
        package var guessCounts = [100, 200, 400, 800]
        /// Deliberate faults for the must-fail controls.
        package var faults = StoreRoundWorker.Faults()
        package var seed: UInt64 = 1
        package init() {}
    }

    package struct Result: Sendable, CustomStringConvertible {
        /// ε the agent's ledger charged for the round, at `delta`.
        package var claimedEpsilon: Double
        package var ledgerMechanisms: [String]
        package var includedCanaries: Int
        /// The one-run lower bound, its guesses and how many were right.
        package var epsilonLowerBound: Double
        package var guesses: Int
        package var correct: Int
        /// The largest ε this audit could certify (every guess of the largest k right).
        package var maxCertifiable: Double
        /// Gaussian-DP estimate: μ̂, its standard error, and ε̂ at `delta`.
        package var mu: Double
        package var muStandardError: Double
        package var estimatedEpsilon: Double
        /// ε̂ at μ̂ + 3 standard errors.
        package var estimatedEpsilonUpper: Double
        /// The norm of a canary's unclipped update, in units of S, and the share of it on its own rows.
        package var canaryNormOverClip: Double
        package var ownShare: Double
        /// Parameters of the audited model.
        package var dimension: Int

        package var description: String {
            String(format: "claimed ε %.3f; lower bound %.3f (%d/%d right, certifiable up to %.2f); μ̂ %.3f ± %.3f → "
                   + "ε̂ %.3f (+3 s.e. %.3f); %d included; canary updates %.1f·S, %.2f on own rows", claimedEpsilon, epsilonLowerBound,
                   correct, guesses, maxCertifiable, mu, muStandardError, estimatedEpsilon, estimatedEpsilonUpper,
                   includedCanaries, canaryNormOverClip, ownShare)
        }
    }

    package var settings: Settings
    package init(settings: Settings) { self.settings = settings }

    /// Runs the audit in `directory` (a store and a ledger are created there).
    package func run(in directory: URL) throws -> Result {
        let s = settings
        let backgroundCategories = 64
        let shape = LSTMShape(categories: s.canaries + backgroundCategories + 1, embedding: 8, hidden: 16)
        let canaryCategory = { (c: Int) -> UInt64 in 1_000_000 + UInt64(c) }
        var items: [UInt64: Int] = [:]
        for c in 0..<s.canaries { items[canaryCategory(c)] = 1 }
        for b in 1...backgroundCategories { items[UInt64(b)] = 1 }
        let catalog = CategoryCatalog(itemsPerCategory: items, categories: shape.categories)
        var coin = SplitMix64(seed: s.seed)
        let included = (0..<s.canaries).map { _ in coin.next() & 1 == 1 }
        func canaryEvents(_ c: Int) -> [BehaviorEvent] {
            (0..<12).map { t in
                BehaviorEvent(user: 10_000_000 + UInt64(c), item: canaryCategory(c) * 10, category: canaryCategory(c),
                              action: .view, timestamp: 1_511_539_200 + Int64(t * 600))
            }
        }
        var events: [BehaviorEvent] = []
        for user in 1...s.backgroundShoppers {
            for t in 0..<20 {
                let category = UInt64(1 + Int(coin.next() % UInt64(backgroundCategories)))
                events.append(BehaviorEvent(user: UInt64(user), item: category * 10, category: category, action: .view,
                                            timestamp: 1_511_539_200 + Int64(t * 600)))
            }
        }
        for c in 0..<s.canaries where included[c] { events += canaryEvents(c) }
        let store = try EventStore(path: directory.appendingPathComponent("events.sqlite").path)
        _ = try store.append(events)
        let ledger = try PrivacyLedger(path: directory.appendingPathComponent("privacy.sqlite").path,
                                       budget: PrivacyBudget(epsilon: 1_000, delta: s.delta))
        var worker = StoreRoundWorker(store: store, catalog: catalog, evaluationUsers: 0, threads: 1, ledger: ledger,
                                      floor: PrivacyFloor(minNoiseMultiplier: 0.1, maxSamplingRate: 1))
        worker.faults = s.faults
        // The aggregator (the adversary) chooses the model it announces: every canary category gets the same
        // embedding and output rows, so each canary's update is the same pattern on its own rows.
        var global = LSTMParameters<Float>(shape: shape, seed: s.seed)
        let layout = shape.layout
        func rows(_ index: Int) -> [Range<Int>] {
            [layout.embedding.lowerBound + index * shape.embedding ..< layout.embedding.lowerBound + (index + 1) * shape.embedding,
             layout.outputWeight.lowerBound + index * shape.hidden ..< layout.outputWeight.lowerBound + (index + 1) * shape.hidden,
             layout.outputBias.lowerBound + index ..< layout.outputBias.lowerBound + index + 1]
        }
        let template = rows(Int(catalog.modelIndex(of: canaryCategory(0)))).map { Array(global.values[$0]) }
        for c in 1..<s.canaries {
            for (range, values) in zip(rows(Int(catalog.modelIndex(of: canaryCategory(c)))), template) {
                global.values.replaceSubrange(range, with: values)
            }
        }
        let hyperparameters = RoundHyperparameters(samplingRate: s.samplingRate, clipNorm: s.clipNorm,
                                                   noiseMultiplier: s.noiseMultiplier, learningRate: s.learningRate,
                                                   localSteps: 1, sequenceLength: 20)
        let plan = RoundPlan(round: 1, modelVersion: 0,
                             deadlineMilliseconds: Int64(Date().timeIntervalSince1970 * 1000) + 600_000, minAgents: 1,
                             hyperparameters: hyperparameters)
        let work = try worker.work(global: global, modelVersion: 0, round: plan)

        // The wire: sealed to the aggregator and signed by the agent, opened and decoded as the aggregator does.
        let agent = NodeIdentity(), aggregator = NodeIdentity()
        let sealed = try EnvelopeSealer(identity: agent, senderID: "audited", recipient: aggregator.box.publicKey)
            .seal(work.submission.wire.encoded(), kind: MessageKind.update.rawValue, round: 1)
        let opened = try EnvelopeOpener(recipient: aggregator.box, senders: ["audited": agent.signing.publicKey])
            .open(sealed.bytes, expecting: .init(senderID: "audited", kind: MessageKind.update.rawValue, round: 1))
        let release = LocalUpdate(try UpdateSubmission(decoding: opened.payload)).values

        // The adversary: a canary's own update from the global model (the same pattern for every canary), and
        // each canary's score: the release on that canary's rows, projected on the pattern.
        let workspace = LSTMWorkspace<Float>(shape: shape)
        var gradient: [Float] = []
        let sequence = EventSequence(events: canaryEvents(0), catalog: catalog)
        let prefix = EventSequence(categories: Array(sequence.categories.dropLast()),
                                   actions: Array(sequence.actions.dropLast()), gaps: Array(sequence.gaps.dropLast()))
        // One local SGD step: the canary's update is −η·∇ (clipping only rescales it).
        _ = workspace.gradient(parameters: global, batch: SequenceBatch([prefix]), into: &gradient)
        let delta = gradient.map { -s.learningRate * Double($0) }
        let canaryNorm = delta.reduce(0) { $0 + $1 * $1 }.squareRoot() / s.clipNorm
        let pattern = rows(Int(catalog.modelIndex(of: canaryCategory(0)))).flatMap { delta[$0] }
        let patternNorm = pattern.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let direction = pattern.map { $0 / patternNorm }
        let scores = (0..<s.canaries).map { c in
            let values = rows(Int(catalog.modelIndex(of: canaryCategory(c)))).flatMap { release[$0] }
            return zip(values, direction).reduce(0) { $0 + Double($1.0) * $1.1 }
        }
        // Gaussian estimate.
        let inScores = scores.indices.filter { included[$0] }.map { scores[$0] }
        let outScores = scores.indices.filter { !included[$0] }.map { scores[$0] }
        func meanAndVariance(_ values: [Double]) -> (Double, Double) {
            let mean = values.reduce(0, +) / Double(values.count)
            return (mean, values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1))
        }
        let (inMean, inVariance) = meanAndVariance(inScores), (outMean, outVariance) = meanAndVariance(outScores)
        let sd = outVariance.squareRoot()
        let mu = (inMean - outMean) / sd
        let standardError = (inVariance / Double(inScores.count) + outVariance / Double(outScores.count)).squareRoot() / sd

        // Rigorous one-run bound over top-k "included" guesses.
        let order = scores.indices.sorted { scores[$0] > scores[$1] }
        let levels = s.guessCounts.filter { $0 <= s.canaries }
        let beta = (s.beta - Double(s.canaries) * s.delta) / Double(max(1, levels.count))
        var bound = 0.0, guesses = levels.first ?? 0, correct = 0
        for k in levels {
            let right = order.prefix(k).filter { included[$0] }.count
            let candidate = CanaryAudit.epsilonLowerBound(correct: right, guesses: k, beta: beta)
            if candidate > bound || (bound == 0 && k == guesses) { (bound, guesses, correct) = (candidate, k, right) }
        }
        let maxK = levels.max() ?? 0
        return Result(claimedEpsilon: try ledger.spentEpsilon(), ledgerMechanisms: try ledger.entries().map(\.mechanism),
                      includedCanaries: inScores.count, epsilonLowerBound: bound, guesses: guesses, correct: correct,
                      maxCertifiable: CanaryAudit.epsilonLowerBound(correct: maxK, guesses: maxK, beta: beta),
                      mu: mu, muStandardError: standardError,
                      estimatedEpsilon: Self.gaussianEpsilon(mu: max(0, mu), delta: s.delta),
                      estimatedEpsilonUpper: Self.gaussianEpsilon(mu: max(0, mu + 3 * standardError), delta: s.delta),
                      canaryNormOverClip: canaryNorm, ownShare: patternNorm / (canaryNorm * s.clipNorm),
                      dimension: shape.layout.count)
    }

    /// ε at `delta` of μ-Gaussian differential privacy (Dong, Roth, Su 2019, Cor. 2.13):
    /// δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2), solved for ε by bisection.
    package static func gaussianEpsilon(mu: Double, delta: Double) -> Double {
        guard mu > 0 else { return 0 }
        func phi(_ x: Double) -> Double { 0.5 * erfc(-x / 2.0.squareRoot()) }
        func deltaAt(_ epsilon: Double) -> Double {
            phi(-epsilon / mu + mu / 2) - exp(epsilon) * phi(-epsilon / mu - mu / 2)
        }
        guard deltaAt(0) > delta else { return 0 }
        var low = 0.0, high = 1.0
        while deltaAt(high) > delta && high < 1_000 { high *= 2 }
        for _ in 0..<100 {
            let middle = (low + high) / 2
            if deltaAt(middle) > delta { low = middle } else { high = middle }
        }
        return high
    }
}
