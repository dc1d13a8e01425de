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
                                            clipCount: 4))
        await rounds.close()
        // 9 of the expected 10 users were within S (released centred: 9 − 10/2 = 4): S grows by exp(−0.2 (0.9 − 0.5)).
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

    @Test("Past the round's deadline the worker releases nothing and charges nothing — evaluation and demand counts included — and the demand cursor stays")
    func lateRoundChargesNothing() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-worker-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let (store, catalog, shape) = try Self.workerStore(in: directory)
        func plan(_ round: UInt64, deadlineIn milliseconds: Int64) -> RoundPlan {
            RoundPlan(round: round, modelVersion: 0, deadlineMilliseconds: Int64(Date().timeIntervalSince1970 * 1000) + milliseconds,
                      minAgents: 1, hyperparameters: RoundHyperparameters(
                          samplingRate: 0.5, clipNorm: 1, noiseMultiplier: 1.2, learningRate: 1, localSteps: 1, sequenceLength: 10))
        }
        let ledger = try PrivacyLedger(path: directory.appendingPathComponent("privacy.sqlite").path,
                                       budget: PrivacyBudget(epsilon: 50, delta: 1e-6))
        var worker = StoreRoundWorker(store: store, catalog: catalog, evaluationUsers: 10, threads: 1, ledger: ledger,
                                      floor: PrivacyFloor(), evaluationNoiseMultiplier: 5)
        worker.demand = .init(noiseMultiplier: 4, after: 0)
        #expect {
            _ = try worker.work(global: LSTMParameters(shape: shape, seed: 1), modelVersion: 0, round: plan(1, deadlineIn: -1_000))
        } throws: { error in
            guard case RoundWorkError.deadlinePassed = error else { return false }
            return true
        }
        #expect(try ledger.entries().isEmpty, "nothing left, nothing charged")
        // The next round releases everything: the late round's demand counts were not lost either.
        let work = try worker.work(global: LSTMParameters(shape: shape, seed: 1), modelVersion: 0, round: plan(2, deadlineIn: 60_000))
        #expect(try ledger.entries().map(\.mechanism).sorted() == ["demand_counts", "evaluation", "model_update"])
        let shoppers = try #require(work.demand?.shoppers)
        #expect(shoppers > 10, "the demand release counts the store's shoppers (about half of 60, noised): \(shoppers)")
    }

    @Test("The worker charges the update and the clip count jointly before returning them, and refuses past the budget")
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
        let worker = StoreRoundWorker(store: store, catalog: catalog, evaluationUsers: 10, threads: 1, ledger: ledger,
                                      floor: PrivacyFloor())
        let work = try worker.work(global: LSTMParameters(shape: shape, seed: 1), modelVersion: 0, round: open)
        #expect(work.submission.users == 0, "the exact user count is not released under noise")
        #expect(work.evaluation == nil, "no evaluation is released under a budget without evaluation noise")
        #expect(try ledger.entries().map(\.mechanism) == ["model_update+clip_count"])
        // One subsampled Gaussian: (update / z_u, centred count / (2·10)) has L2 sensitivity √(1/z_u² + 1/z_c²),
        // where z_u = 1.2 / (1 + γ√d/S) and z_c = 20 / (1 + γ) charge the quantised grids' rounding (γ = 2⁻²⁰
        // of the unit); integer orders only.
        let update = 1.2 / (1 + Double(shape.layout.count).squareRoot() / 1_048_576)
        let count = 20 / (1 + 1.0 / 1_048_576)
        let joint = 1 / (1 / (update * update) + 1 / (count * count)).squareRoot()
        let expected = RDP.epsilon(rdp: RDP.integerOrdersOnly(RDP.subsampledGaussian(q: 0.5, noiseMultiplier: joint)),
                                   delta: 1e-6).epsilon
        #expect(abs(try ledger.spentEpsilon() - expected) < 1e-9)
        // Control: charging update and count as two mechanisms costs less than the truth.
        let separate = RDP.epsilon(rdp: zip(RDP.subsampledGaussian(q: 0.5, noiseMultiplier: 1.2),
                                            RDP.subsampledGaussian(q: 0.5, noiseMultiplier: 20)).map { $0 + $1 },
                                   delta: 1e-6).epsilon
        #expect(separate < expected)

        let tight = try PrivacyLedger(path: directory.appendingPathComponent("privacy.sqlite").path,
                                      budget: PrivacyBudget(epsilon: expected * 1.01, delta: 1e-6))
        let refusing = StoreRoundWorker(store: store, catalog: catalog, evaluationUsers: 10, threads: 1, ledger: tight,
                                        floor: PrivacyFloor())
        #expect(throws: PrivacyLedgerError.self) {
            _ = try refusing.work(global: LSTMParameters(shape: shape, seed: 1), modelVersion: 0, round: open)
        }
        #expect(try tight.entries().count == 1, "a refused round charges nothing")
    }

    @Test("Fixed shape: past the cutoff the update is noise alone and still charged; evaluations are always sent; releases wait for the cutoff")
    func fixedShapeReleases() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-shape-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let (store, catalog, shape) = try Self.workerStore(in: directory)
        let ledger = try PrivacyLedger(path: directory.appendingPathComponent("privacy.sqlite").path,
                                       budget: PrivacyBudget(epsilon: 1_000, delta: 1e-6))
        let hyperparameters = RoundHyperparameters(samplingRate: 0.5, clipNorm: 1, noiseMultiplier: 2, learningRate: 1,
                                                   localSteps: 1, sequenceLength: 10)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var worker = StoreRoundWorker(store: store, catalog: catalog, evaluationUsers: 0, threads: 1, ledger: ledger,
                                      floor: PrivacyFloor(), evaluationNoiseMultiplier: 5)
        let late = RoundPlan(round: 1, modelVersion: 0, deadlineMilliseconds: now + 2_000, minAgents: 1,
                             hyperparameters: hyperparameters)
        Thread.sleep(forTimeInterval: 1.8)  // the cutoff (≥ 250 ms before the deadline) has passed
        let global = LSTMParameters<Float>(shape: shape, seed: 1)
        let noiseOnly = try worker.work(global: global, modelVersion: 0, round: late)
        #expect(noiseOnly.noiseOnly && noiseOnly.sampledUsers == 0)
        let values = noiseOnly.submission.values.map(Double.init)
        let mean = values.reduce(0, +) / Double(values.count)
        let sd = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count)).squareRoot()
        // Five standard errors each: the sample sd of n normals has standard error σ/√(2n) (≈ 0.04 here, so a
        // fixed ±0.1 failed about one run in 60); a wrong scale (z = 1, or √2 off) is still far outside.
        let n = Double(values.count)
        #expect(abs(sd - 2) < 5 * 2 / (2 * n).squareRoot() && abs(mean) < 5 * 2 / n.squareRoot(),
                "pure noise N(0, (zS)²): mean \(mean), sd \(sd) over \(values.count) values")
        #expect(noiseOnly.evaluation != nil, "an evaluation is sent even with nothing evaluated (noise alone)")
        #expect(try ledger.entries().map(\.mechanism) == ["evaluation", "model_update"], "noise-only releases are charged")

        // Control: with time left the update carries the users' deltas, and with releaseAtCutoff the work
        // returns no earlier than the cutoff.
        worker.releaseAtCutoff = true
        let start = Date().timeIntervalSince1970 * 1000
        let open = RoundPlan(round: 2, modelVersion: 0, deadlineMilliseconds: Int64(start) + 3_000, minAgents: 1,
                             hyperparameters: hyperparameters)
        let cutoff = StoreRoundWorker.cutoff(deadlineMilliseconds: open.deadlineMilliseconds, now: start)
        let trained = try worker.work(global: global, modelVersion: 0, round: open)
        #expect(!trained.noiseOnly && trained.sampledUsers > 0)
        #expect(Date().timeIntervalSince1970 * 1000 >= cutoff - 5, "released before the cutoff")
        #expect(abs(cutoff - (start + 3_000 - 600)) < 50, "a fifth of the 3 s left before the deadline")
    }

    @Test("Adaptive clipping is charged jointly: the reviewer's figures (count of sensitivity 1 = centred count at half the noise)")
    func jointClippingMatchesReview() {
        // A count of sensitivity 1 with noise σ is the centred count (sensitivity ½) with noise σ/2.
        func epsilons(q: Double, z: Double, countSigma: Double, rounds: Int) -> (joint: Double, separate: Double) {
            let joint = RoundReleasePlan(samplingRate: q, noiseMultiplier: z, clipCountNoiseMultiplier: countSigma / 2)
            let separate = zip(RDP.subsampledGaussian(q: q, noiseMultiplier: z),
                               RDP.subsampledGaussian(q: q, noiseMultiplier: countSigma)).map { ($0 + $1) * Double(rounds) }
            return (RDP.epsilon(rdp: joint.rdp(rounds: rounds), delta: 1e-6).epsilon,
                    RDP.epsilon(rdp: separate, delta: 1e-6).epsilon)
        }
        let a = epsilons(q: 0.1, z: 0.8, countSigma: 2, rounds: 200)
        let b = epsilons(q: 0.5, z: 1, countSigma: 1, rounds: 20)
        #expect(abs(a.joint - 22.4) < 0.1 && abs(a.separate - 19.8) < 0.1, "\(a)")
        #expect(abs(b.joint - 31.3) < 0.1 && abs(b.separate - 26.7) < 0.1, "\(b)")
        #expect(RoundReleasePlan.jointNoiseMultiplier(update: 1, clipCount: 0.5) == 1 / 2.0.squareRoot())
    }

    @Test("The agent's floor refuses rounds whose announced noise or sampling rate breaks it, before reading or charging anything")
    func floorRefusesWeakRounds() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-floor-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let (store, catalog, shape) = try Self.workerStore(in: directory)
        let ledger = try PrivacyLedger(path: directory.appendingPathComponent("privacy.sqlite").path,
                                       budget: PrivacyBudget(epsilon: 1_000, delta: 1e-6))
        let floor = PrivacyFloor(minNoiseMultiplier: 0.8, maxSamplingRate: 0.2)
        let alerting = StoreRoundWorker.Alerting(
            detector: SwitchDetector.Settings(), rule: AlertRule(), calibration: .init(budgetPer10k: 50),
            churn: ChurnDetector.Settings(), churnCheckSeconds: 3_600,
            thresholds: { AlertThresholds(interestShift: 2, churnRisk: 5) })
        let worker = StoreRoundWorker(store: store, catalog: catalog, evaluationUsers: 10, threads: 1, ledger: ledger,
                                      floor: floor, alerting: alerting)
        func round(q: Double, z: Double, countSigma: Double = 0, histogram: Double = 0) -> RoundPlan {
            RoundPlan(round: 1, modelVersion: 0, deadlineMilliseconds: Int64(Date().timeIntervalSince1970 * 1000) + 60_000,
                      minAgents: 1, hyperparameters: RoundHyperparameters(
                          samplingRate: q, clipNorm: 1, noiseMultiplier: z, learningRate: 1, localSteps: 1,
                          sequenceLength: 10, clipCountNoiseMultiplier: countSigma, histogramNoiseMultiplier: histogram))
        }
        let global = LSTMParameters<Float>(shape: shape, seed: 1)
        let weak = [round(q: 0.1, z: 0), round(q: 0.1, z: 0.5), round(q: 0.5, z: 1),
                    round(q: 0.1, z: 1, countSigma: 0.2),   // the joint multiplier drops to 0.37
                    round(q: 0.1, z: 1, histogram: 1)]      // alert-rate counts accounted at 0.5
        for plan in weak {
            #expect(throws: RoundWorkError.self, "\(plan.hyperparameters)") {
                _ = try worker.work(global: global, modelVersion: 0, round: plan)
            }
        }
        #expect(try ledger.entries().isEmpty, "refused rounds charge nothing")
        // Control: a round within the floor is trained and charged.
        _ = try worker.work(global: global, modelVersion: 0, round: round(q: 0.2, z: 0.9, countSigma: 5, histogram: 2))
        #expect(try ledger.entries().map(\.mechanism) == ["alert_rate", "model_update+clip_count"])
        // NON-PRIVATE (no floor): the same weak round is released, and recorded at ε = ∞.
        let open = try PrivacyLedger(path: directory.appendingPathComponent("open.sqlite").path,
                                     budget: PrivacyBudget(epsilon: .infinity, delta: 1e-6))
        let nonPrivate = StoreRoundWorker(store: store, catalog: catalog, evaluationUsers: 10, threads: 1, ledger: open,
                                          floor: nil)
        let work = try nonPrivate.work(global: global, modelVersion: 0, round: round(q: 1, z: 0))
        #expect(work.evaluation != nil, "NON-PRIVATE agents report exact evaluations")
        #expect(Set(try open.entries().map(\.mechanism)) == ["model_update", "evaluation"])
        #expect(try open.spentEpsilon() == .infinity)
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
                                      floor: PrivacyFloor(), evaluationNoiseMultiplier: 3, alerting: alerting)
        let rounds = 3
        for round in 1...rounds {
            let open = RoundPlan(round: UInt64(round), modelVersion: 0,
                                 deadlineMilliseconds: Int64(Date().timeIntervalSince1970 * 1000) + 60_000, minAgents: 1,
                                 hyperparameters: RoundHyperparameters(
                                     samplingRate: 0.5, clipNorm: 1, noiseMultiplier: 1.2, learningRate: 1, localSteps: 1,
                                     sequenceLength: 10, clipCountNoiseMultiplier: 10, histogramNoiseMultiplier: 2))
            _ = try worker.work(global: LSTMParameters(shape: shape, seed: 1), modelVersion: 0, round: open)
        }
        #expect(Set(try ledger.entries().map(\.mechanism)) == ["model_update+clip_count", "alert_rate", "evaluation"])
        let plan = RoundReleasePlan(samplingRate: 0.5, noiseMultiplier: 1.2, clipCountNoiseMultiplier: 10,
                                    alertRateNoiseMultiplier: 2, evaluationNoiseMultiplier: 3,
                                    dimension: shape.layout.count)
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
