@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import TestSupport
import Testing

/// Audit 7: an empirical lower bound on ε from canaries inserted into real federated rounds (one-run
/// auditing, Steinke, Nasr, Jagielski 2023; canary clients, Andrew et al. 2024). See ``CanaryAudit``.
@Suite("Audit 7: empirical ε lower bound from canaries")
struct CanaryAuditTests {
    static func shoppers() -> (LSTMShape, [EventSequence]) {
        // Canaries are random directions in parameter space, so their cross-talk shrinks with the model's
        // size: 31.5k parameters keep it well below one canary's signal.
        let shape = LSTMShape(categories: 512, embedding: 16, hidden: 32)
        let data = SimulationData.simulated(users: 40, days: 3, seed: 5, shape: shape, keep: 31)
        return (shape, data.users)
    }

    /// With the noise the accountant assumes, the audit's lower bound stays below the accountant's ε; with
    /// the noise switched off, the same audit on the same data finds a large ε — it has the power to
    /// catch a mechanism that leaks.
    @Test("Audit 7: the canary lower bound on ε stays below the accountant's ε; without noise the same audit reports a large ε")
    func canaryLowerBound() {
        let (shape, users) = Self.shoppers()
        var settings = CanaryAudit.Settings()
        settings.canaries = 1_000
        settings.rounds = 20
        settings.samplingRate = 0.5
        settings.noiseMultiplier = 1.5
        let noisy = CanaryAudit(settings: settings).run(shape: shape, users: users)
        #expect(noisy.claimedEpsilon.isFinite)
        #expect(noisy.epsilonLowerBound < noisy.claimedEpsilon,
                "lower bound \(noisy.epsilonLowerBound) ≥ claimed \(noisy.claimedEpsilon): the mechanism leaks more than accounted")

        settings.noiseMultiplier = 0
        let leaky = CanaryAudit(settings: settings).run(shape: shape, users: users)
        #expect(leaky.epsilonLowerBound > 4, "without noise the audit must detect the leak: \(leaky)")
        #expect(leaky.epsilonLowerBound > noisy.epsilonLowerBound + 2)
        print(String(format: "canary audit: z = 1.5 → ε ≥ %.3f (claimed %.3f; %d/%d correct); z = 0 → ε ≥ %.3f (%d/%d correct)",
                     noisy.epsilonLowerBound, noisy.claimedEpsilon, noisy.correct, noisy.guesses,
                     leaky.epsilonLowerBound, leaky.correct, leaky.guesses))
    }

    @Test("The one-run bound: all of 1,000 guesses right rejects ε below ~5.8; half right rejects nothing")
    func boundArithmetic() {
        let perfect = CanaryAudit.epsilonLowerBound(correct: 1_000, guesses: 1_000, beta: 0.05)
        #expect(perfect > 5.5 && perfect < 6.2)
        #expect(CanaryAudit.epsilonLowerBound(correct: 500, guesses: 1_000, beta: 0.05) == 0)
        // P[Bin(10, ½) ≥ 10] = 1/1024.
        #expect(abs(CanaryAudit.binomialTail(atLeast: 10, trials: 10, probability: 0.5) - 1.0 / 1024) < 1e-12)
    }
}
