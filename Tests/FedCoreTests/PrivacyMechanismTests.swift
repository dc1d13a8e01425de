@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

@Suite("Adaptive clipping and the agent's charged releases")
struct PrivacyMechanismTests {
    @Test("The geometric update moves the clip norm to the target quantile of the users' norms")
    func adaptiveClippingTracksQuantile() {
        var random = SplitMix64(seed: 4)
        // Users' update norms: log-normal around 3.
        let norms = (0..<5_000).map { _ in 3 * exp(0.5 * random.nextGaussian()) }
        let rule = AdaptiveClipping(targetQuantile: 0.7, learningRate: 0.2, countNoiseMultiplier: 10)
        var clipNorm = 0.1
        for _ in 0..<300 {
            let within = Double(norms.filter { $0 <= clipNorm }.count) / Double(norms.count)
            clipNorm = rule.next(clipNorm: clipNorm, unclipped: within)
        }
        let quantile = norms.sorted()[Int(0.7 * Double(norms.count))]
        #expect(abs(clipNorm - quantile) / quantile < 0.05, "S = \(clipNorm), 70% quantile = \(quantile)")
    }

    @Test("With adaptive clipping the coordinator moves S by the agents' counts over the fixed denominator")
    func coordinatorAdaptsClipNorm() async throws {
        let shape = LSTMShape(categories: 2, embedding: 1, hidden: 1)
        let rounds = RoundCoordinator(parameters: [Float](repeating: 0, count: shape.layout.count), round: 0, enrolled: ["a"], minAgents: 1, maxUpdateNorm: 1e6,
                                      averaging: FederatedAveraging(denominator: .fixed(10)),
                                      adaptiveClipping: AdaptiveClipping(targetQuantile: 0.5, learningRate: 0.2,
                                                                         countNoiseMultiplier: 10),
                                      initialClipNorm: 2)
        let round = await rounds.open(deadline: .now + .seconds(60))
        try await rounds.accept(ModelUpdate(agentID: "a", round: round,
                                            deltaSum: [Float](repeating: 0.01, count: shape.layout.count), users: 0,
                                            clipCount: 9))
        await rounds.close()
        // 9 of the expected 10 users were within S: S grows by exp(−0.2 (0.9 − 0.5)).
        #expect(abs(await rounds.clipNorm - 2 * exp(-0.2 * 0.4)) < 1e-12)
        #expect(await rounds.checkpoint(shape: shape).clipNorm
            == (await rounds.clipNorm))
    }

    /// 60 simulated shoppers over 3 days in a store in `directory`, their catalog and a small model shape.
    private static func workerStore(in directory: URL) throws -> (EventStore, CategoryCatalog, LSTMShape) {
        var parameters = ShopperSimulator.Parameters()
        parameters.users = 60
        parameters.days = 3
        let events = ShopperSimulator(parameters: parameters).run().events
        let store = try EventStore(path: directory.appendingPathComponent("events.sqlite").path)
        try store.append(events)
        var items: [UInt64: Set<UInt64>] = [:]
        CategoryCatalog.itemsPerCategory(events, into: &items)
        let catalog = CategoryCatalog(itemsPerCategory: items.mapValues(\.count), categories: 32)
        return (store, catalog, LSTMShape(categories: 32, embedding: 8, hidden: 8))
    }

    @Test("The worker charges the update and the clip count before returning them, and refuses past the budget")
    func workerChargesBeforeRelease() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-worker-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let (store, catalog, shape) = try Self.workerStore(in: directory)
        let open = RoundPlan(round: 1, modelVersion: 0, deadlineMilliseconds: Int64(Date().timeIntervalSince1970 * 1000) + 60_000,
                             minAgents: 1, hyperparameters: RoundHyperparameters(
                                 samplingRate: 0.5, clipNorm: 1, noiseMultiplier: 1.2, learningRate: 1, localSteps: 1,
                                 sequenceLength: 10, clipCountNoiseMultiplier: 10))
        let budget = PrivacyBudget(epsilon: 50, delta: 1e-6)
        let ledger = try PrivacyLedger(path: directory.appendingPathComponent("privacy.sqlite").path, budget: budget)
        let worker = StoreRoundWorker(store: store, catalog: catalog, evaluationUsers: 10, threads: 1, ledger: ledger)
        let work = try worker.work(global: LSTMParameters(shape: shape, seed: 1), modelVersion: 0, round: open)
        #expect(work.submission.users == 0, "the exact user count is not released under noise")
        #expect(work.evaluation == nil, "no evaluation is released under a budget without evaluation noise")
        #expect(try ledger.entries().map(\.mechanism).sorted() == ["clip_count", "model_update"])
        let expected = RDP.epsilon(rdp: zip(RDP.subsampledGaussian(q: 0.5, noiseMultiplier: 1.2),
                                            RDP.subsampledGaussian(q: 0.5, noiseMultiplier: 10)).map { $0 + $1 },
                                   delta: 1e-6).epsilon
        #expect(abs(try ledger.spentEpsilon() - expected) < 1e-9)

        let tight = try PrivacyLedger(path: directory.appendingPathComponent("privacy.sqlite").path,
                                      budget: PrivacyBudget(epsilon: expected * 1.01, delta: 1e-6))
        let refusing = StoreRoundWorker(store: store, catalog: catalog, evaluationUsers: 10, threads: 1, ledger: tight)
        #expect(throws: PrivacyLedgerError.self) {
            _ = try refusing.work(global: LSTMParameters(shape: shape, seed: 1), modelVersion: 0, round: open)
        }
        #expect(try tight.entries().count == 2, "a refused round charges nothing")
    }

    @Test("privacy-plan's composition is exactly what the round worker charges: update, clip count, alert-rate counts, evaluation")
    func planMatchesLedger() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-plan-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let (store, catalog, shape) = try Self.workerStore(in: directory)
        let ledger = try PrivacyLedger(path: directory.appendingPathComponent("privacy.sqlite").path,
                                       budget: PrivacyBudget(epsilon: 1_000, delta: 1e-6))
        let alerting = StoreRoundWorker.Alerting(
            detector: SwitchDetector.Settings(), rule: AlertRule(), calibration: .init(budgetPer10k: 50),
            churn: ChurnDetector.Settings(), churnCheckSeconds: 3_600,
            thresholds: { AlertThresholds(interestShift: 2, churnRisk: 5) })
        let worker = StoreRoundWorker(store: store, catalog: catalog, evaluationUsers: 10, threads: 1, ledger: ledger,
                                      evaluationNoiseMultiplier: 3, alerting: alerting)
        let rounds = 3
        for round in 1...rounds {
            let open = RoundPlan(round: UInt64(round), modelVersion: 0,
                                 deadlineMilliseconds: Int64(Date().timeIntervalSince1970 * 1000) + 60_000, minAgents: 1,
                                 hyperparameters: RoundHyperparameters(
                                     samplingRate: 0.5, clipNorm: 1, noiseMultiplier: 1.2, learningRate: 1, localSteps: 1,
                                     sequenceLength: 10, clipCountNoiseMultiplier: 10, histogramNoiseMultiplier: 2))
            _ = try worker.work(global: LSTMParameters(shape: shape, seed: 1), modelVersion: 0, round: open)
        }
        #expect(Set(try ledger.entries().map(\.mechanism)) == ["model_update", "clip_count", "alert_rate", "evaluation"])
        let plan = RoundReleasePlan(samplingRate: 0.5, noiseMultiplier: 1.2, clipCountNoiseMultiplier: 10,
                                    alertRateNoiseMultiplier: 2, evaluationNoiseMultiplier: 3)
        let planned = RDP.epsilon(rdp: plan.rdp(rounds: rounds), delta: 1e-6).epsilon
        let spent = try ledger.spentEpsilon()
        #expect(abs(spent - planned) < 1e-9, "ledger \(spent) vs plan \(planned)")
        // Control: a plan that leaves out the drift release (what privacy-plan did before) under-states ε.
        var partial = plan
        partial.alertRateNoiseMultiplier = nil
        let understated = RDP.epsilon(rdp: partial.rdp(rounds: rounds), delta: 1e-6).epsilon
        #expect(understated < spent - 0.1, "without the drift release \(understated) vs \(spent)")
    }
}
