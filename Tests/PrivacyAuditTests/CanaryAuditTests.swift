@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import TestSupport
import Testing

/// Audit 7: canary shoppers routed through the agent's real path (``ShopperCanaryAudit``): Poisson
/// sampling from the CSPRNG, local training, clipping, noise, the ledger's charge, and the sealed, signed
/// wire message the aggregator opens. 4,000 canaries (each included by a fair coin), one round at
/// q = 0.5, z = 2, S = 1; the ledger charges ε = 1.757 at δ = 1e-6.
@Suite("Audit 7: canary shoppers through the real path, with controls that must fail", .serialized)
struct CanaryAuditTests {
    static func audit(_ faults: StoreRoundWorker.Faults = .init()) throws -> ShopperCanaryAudit.Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-canary-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var settings = ShopperCanaryAudit.Settings()
        settings.faults = faults
        return try ShopperCanaryAudit(settings: settings).run(in: directory)
    }

    /// Claim proved: the release of one round, as the agent makes and the aggregator receives it, leaks no
    /// more than the ε its ledger charged. (1) The one-run lower bound (top-k "included" guesses, β = 0.01
    /// with Bonferroni over k and m·δ subtracted) is at most the charged ε: false failure ≤ 0.01 if the
    /// mechanism is as accounted (in practice the bound sits near 0.1). (2) The Gaussian estimate ε̂ is at
    /// most the charged ε: the mean shift of included canaries is q·S/(z·S) = 0.25 noise units
    /// on average when clipping and noise are right (60 runs at 2,000 canaries: mean 0.251, sd 0.040), ε̂ =
    /// ε charged needs μ̂ ≈ 0.40, and with 4,000 canaries μ̂'s standard error is ≈ 0.032, so a false failure
    /// needs a 4.7-s.e. excursion (normal approximation: ≈ 1·10⁻⁶; at 2,000 canaries it was 3.3 s.e., and CI
    /// once met it with μ̂ = 0.399). (3) Power: every
    /// guess right would certify ε ≈ 4.8, above the charged ε — this audit can fail.
    @Test("Audit 7: canary shoppers through sampling, clipping, noise, the ledger and the wire leak no more than charged; the audit could have shown more")
    func canariesStayWithinTheCharge() throws {
        let result = try Self.audit()
        print("canary audit, as accounted: \(result)")
        #expect(result.ledgerMechanisms == ["model_update"])
        let plan = RoundReleasePlan(samplingRate: 0.5, noiseMultiplier: 2, dimension: result.dimension)
        #expect(abs(result.claimedEpsilon - RDP.epsilon(rdp: plan.rdp(rounds: 1), delta: 1e-6).epsilon) < 1e-9)
        #expect(result.maxCertifiable > result.claimedEpsilon + 2, "the audit must be able to exceed the claim: \(result)")
        #expect(result.epsilonLowerBound <= result.claimedEpsilon, "\(result)")
        #expect(result.estimatedEpsilon <= result.claimedEpsilon, "\(result)")
        #expect(result.canaryNormOverClip > 5, "canary updates must be far above S so that clipping matters: \(result)")
    }

    /// Control that must fail: the agent adds 0.2× the noise its ledger charges. Claim: the audit detects it
    /// — both the estimate and the rigorous bound exceed the charged ε (the included canaries' shift is then
    /// ≈ 1.25 noise units; the bound needs ≥ 186 of 200 top guesses right, ≈ 197 are expected).
    @Test("Audit 7 control (must fail): noise at 0.2× of what the ledger charges is caught")
    func weakNoiseIsCaught() throws {
        let result = try Self.audit(.init(noiseScale: 0.2))
        print("canary audit, noise 0.2×: \(result)")
        #expect(result.estimatedEpsilon > result.claimedEpsilon, "\(result)")
        #expect(result.epsilonLowerBound > result.claimedEpsilon, "\(result)")
    }

    /// Control that must fail: clipping switched off (the canaries' updates are ≈ 25·S). Claim: the audit
    /// detects it by both statistics.
    @Test("Audit 7 control (must fail): clipping switched off is caught")
    func missingClippingIsCaught() throws {
        let result = try Self.audit(.init(clipping: false))
        print("canary audit, no clipping: \(result)")
        #expect(result.estimatedEpsilon > result.claimedEpsilon, "\(result)")
        #expect(result.epsilonLowerBound > result.claimedEpsilon, "\(result)")
    }

    @Test("The one-run bound: all of 1,000 guesses right rejects ε below ~5.8; half right rejects nothing")
    func boundArithmetic() {
        let perfect = CanaryAudit.epsilonLowerBound(correct: 1_000, guesses: 1_000, beta: 0.05)
        #expect(perfect > 5.5 && perfect < 6.2)
        #expect(CanaryAudit.epsilonLowerBound(correct: 500, guesses: 1_000, beta: 0.05) == 0)
        // P[Bin(10, ½) ≥ 10] = 1/1024.
        #expect(abs(CanaryAudit.binomialTail(atLeast: 10, trials: 10, probability: 0.5) - 1.0 / 1024) < 1e-12)
    }

    @Test("The Gaussian-DP conversion: 1-GDP has δ(ε = 1) = Φ(−½) − e·Φ(−3/2) = 0.126945")
    func gaussianConversion() {
        #expect(abs(ShopperCanaryAudit.gaussianEpsilon(mu: 1, delta: 0.126945) - 1) < 1e-3)
        #expect(ShopperCanaryAudit.gaussianEpsilon(mu: 0, delta: 1e-6) == 0)
        #expect(ShopperCanaryAudit.gaussianEpsilon(mu: 0.5, delta: 1e-6) < ShopperCanaryAudit.gaussianEpsilon(mu: 1, delta: 1e-6))
    }
}
