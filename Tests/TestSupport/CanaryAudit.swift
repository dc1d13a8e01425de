import FedIO
import FedLogic
package import FedModel
import FedNode
import FedTools
import Foundation

/// An empirical lower bound on ε from one federated training run (Steinke, Nasr, Jagielski 2023,
/// "Privacy Auditing with One (1) Training Run"), with canary clients as in Andrew et al. 2024.
///
/// m canary users are added to an agent; each is *included* with probability ½ by the auditor's coin.
/// An included canary behaves like a user whose clipped update is always S·u_c for its own random unit
/// direction u_c, and is Poisson-sampled each round like every user. The adversary is the aggregator:
/// it sees every round's release of the agent (the noised sum) and scores each canary by
/// Σ_rounds ⟨release, u_c⟩. It guesses "included" for the k/2 highest scores and "excluded" for the k/2
/// lowest. If the mechanism is ε-DP, the number of correct guesses is stochastically dominated by
/// Binomial(k, e^ε/(1 + e^ε)) (their Theorem 3.1; the δ term adds at most m·δ to the tail probability,
/// which is charged to the confidence level). The largest ε that the observed count rejects at
/// confidence 1 − β is a lower bound on the true ε: if it exceeded the accountant's ε, the accountant
/// (or the implementation) would be wrong.
package struct CanaryAudit: Sendable {
    package struct Settings: Sendable {
        package var canaries = 1_000
        package var rounds = 20
        package var samplingRate = 0.5
        package var noiseMultiplier = 1.5
        package var clipNorm = 1.0
        package var delta = 1e-6
        /// Confidence: the bound holds with probability ≥ 1 − β.
        package var beta = 0.05
        /// Numbers of guesses tried (each at β / count, Bonferroni).
        package var guessCounts = [100, 200, 400, 600, 800]
        package var seed: UInt64 = 1
        package init() {}
    }

    package struct Result: Sendable {
        package var claimedEpsilon: Double
        package var epsilonLowerBound: Double
        package var guesses: Int
        package var correct: Int
        package var includedCanaries: Int
    }

    package var settings: Settings
    package init(settings: Settings) { self.settings = settings }

    /// Runs `settings.rounds` real rounds of the agent's mechanism on `users` (``LocalTraining``,
    /// ``GaussianNoise`` from the CSPRNG, FedAvg of the release into the model) with the canaries added.
    package func run(shape: LSTMShape, users: [EventSequence], threads: Int = 1) -> Result {
        let s = settings
        let parameterCount = shape.layout.count
        var coin = SplitMix64(seed: s.seed)
        // Canary directions (unit vectors) and the auditor's inclusion coins.
        var directions = [Float](repeating: 0, count: s.canaries * parameterCount)
        for c in 0..<s.canaries {
            var norm = 0.0
            for index in 0..<parameterCount {
                let value = coin.nextGaussian()
                directions[c * parameterCount + index] = Float(value)
                norm += value * value
            }
            let scale = Float(1 / norm.squareRoot())
            for index in 0..<parameterCount { directions[c * parameterCount + index] *= scale }
        }
        let included = (0..<s.canaries).map { _ in coin.next() & 1 == 1 }
        let hyperparameters = RoundHyperparameters(samplingRate: s.samplingRate, clipNorm: s.clipNorm,
                                                   noiseMultiplier: s.noiseMultiplier, learningRate: 1, localSteps: 1,
                                                   sequenceLength: 30)
        let training = LocalTraining(hyperparameters: hyperparameters, threads: threads)
        var averaging = FederatedAveraging(denominator: .fixed(s.samplingRate * Double(users.count + s.canaries / 2)))
        var parameters = LSTMParameters<Float>(shape: shape, seed: s.seed)
        var sampler = SodiumRandom()
        var noise = GaussianNoise(generator: SodiumRandom())
        var scores = [Double](repeating: 0, count: s.canaries)
        for round in 1...s.rounds {
            let sampled = training.sample(users, random: &sampler)
            var sum = training.run(global: parameters, users: sampled).deltaSum
            for c in 0..<s.canaries where included[c] && Double.random(in: 0..<1, using: &sampler) < s.samplingRate {
                for index in 0..<parameterCount {
                    sum[index] += Float(s.clipNorm) * directions[c * parameterCount + index]
                }
            }
            let release = noise.noised(sum, sigma: s.noiseMultiplier * s.clipNorm)
            // The adversary's view: this round's release, projected on every canary's direction.
            directions.withUnsafeBufferPointer { u in
                release.withUnsafeBufferPointer { r in
                    for c in 0..<s.canaries {
                        scores[c] += Double(FastMath.dot(r.baseAddress!, u.baseAddress! + c * parameterCount,
                                                         count: parameterCount))
                    }
                }
            }
            averaging.apply([ModelUpdate(agentID: "audited", round: UInt64(round), deltaSum: release, users: 0)],
                            to: &parameters.values)
        }
        let claimed = s.noiseMultiplier > 0
            ? RDP.epsilon(q: s.samplingRate, noiseMultiplier: s.noiseMultiplier, rounds: s.rounds, delta: s.delta).epsilon
            : .infinity
        let order = scores.indices.sorted { scores[$0] > scores[$1] }
        var best = Result(claimedEpsilon: claimed, epsilonLowerBound: 0, guesses: 0, correct: 0,
                          includedCanaries: included.filter { $0 }.count)
        let levels = s.guessCounts.filter { $0 <= s.canaries }
        let beta = s.beta / Double(max(1, levels.count)) - Double(s.canaries) * s.delta
        for k in levels {
            let top = order.prefix(k / 2), bottom = order.suffix(k / 2)
            let correct = top.filter { included[$0] }.count + bottom.filter { !included[$0] }.count
            let bound = Self.epsilonLowerBound(correct: correct, guesses: 2 * (k / 2), beta: beta)
            if bound > best.epsilonLowerBound || best.guesses == 0 {
                best.epsilonLowerBound = max(best.epsilonLowerBound, bound)
                best.guesses = 2 * (k / 2)
                best.correct = correct
            }
        }
        return best
    }

    /// The largest ε such that P[Binomial(guesses, e^ε/(1+e^ε)) ≥ correct] < β: every ε below it is rejected.
    package static func epsilonLowerBound(correct: Int, guesses: Int, beta: Double) -> Double {
        func tail(_ epsilon: Double) -> Double {
            let p = 1 / (1 + exp(-epsilon))
            return binomialTail(atLeast: correct, trials: guesses, probability: p)
        }
        guard tail(0) < beta else { return 0 }
        var low = 0.0, high = 1.0
        while tail(high) < beta && high < 100 { high *= 2 }
        for _ in 0..<60 {
            let middle = (low + high) / 2
            if tail(middle) < beta { low = middle } else { high = middle }
        }
        return low
    }

    /// P[Binomial(n, p) ≥ k], summed in log space.
    package static func binomialTail(atLeast k: Int, trials n: Int, probability p: Double) -> Double {
        guard k > 0 else { return 1 }
        guard k <= n else { return 0 }
        var logTail = -Double.infinity
        for i in k...n {
            let term = lgamma(Double(n + 1)) - lgamma(Double(i + 1)) - lgamma(Double(n - i + 1))
                + Double(i) * log(p) + Double(n - i) * log1p(-p)
            logTail = RDP.logAdd(logTail, term)
        }
        return exp(logTail)
    }
}
