@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import TestSupport
import Foundation
import Testing

@Suite("Byzantine agents: robust aggregation")
struct ByzantineTests {
    /// The oracle: each coordinate's values sorted in double precision, trimmed, averaged.
    private static func oracle(_ vectors: [[Float]], drop: Int) -> [Double] {
        (0..<vectors[0].count).map { index in
            let column = vectors.map { Double($0[index]) }.sorted()
            let kept = column[drop..<(column.count - drop)]
            return kept.reduce(0, +) / Double(kept.count)
        }
    }

    @Test("Trimmed mean and median match a sort-and-trim oracle for 1 to 8 updates")
    func rulesMatchOracle() {
        var random = SplitMix64(seed: 9)
        for n in 1...8 {
            let vectors = (0..<n).map { _ in (0..<257).map { _ in Float(Int(random.next() % 2001) - 1000) / 7 } }
            let mean = AggregationRule.mean.centre(vectors, count: 257)
            let trimmed = AggregationRule.trimmedMean(trim: 2).centre(vectors, count: 257)
            let median = AggregationRule.median.centre(vectors, count: 257)
            let meanOracle = Self.oracle(vectors, drop: 0), trimmedOracle = Self.oracle(vectors, drop: min(2, (n - 1) / 2))
            for index in 0..<257 {
                #expect(abs(mean[index] - meanOracle[index]) < 1e-9)
                #expect(abs(trimmed[index] - trimmedOracle[index]) < 1e-9)
                let column = vectors.map { Double($0[index]) }.sorted()
                let middle = n % 2 == 1 ? column[n / 2] : (column[n / 2 - 1] + column[n / 2]) / 2
                #expect(median[index] == middle)
            }
        }
    }

    @Test("One agent's huge update moves the robust rules by no more than the honest spread; the mean follows it")
    func boundedInfluence() {
        let honest: [[Float]] = [[1, -1, 0.5], [1.2, -0.8, 0.4], [0.9, -1.1, 0.6], [1.1, -0.9, 0.5]]
        let attacked = honest + [[1e6, 1e6, -1e6]]
        for rule in [AggregationRule.trimmedMean(trim: 1), .median] {
            let centre = rule.centre(attacked, count: 3)
            for index in 0..<3 {
                let values = honest.map { Double($0[index]) }
                #expect(centre[index] >= values.min()! && centre[index] <= values.max()!, "\(rule) coordinate \(index)")
            }
        }
        // Control: FedAvg's mean is dragged two hundred thousand units away.
        #expect(AggregationRule.mean.centre(attacked, count: 3)[0] > 1e5)
        // With the fixed DP denominator, the robust sum is n × the centre: for identical updates, the plain sum.
        let same = [ModelUpdate](repeating: ModelUpdate(agentID: "a", round: 1, deltaSum: [2, -4], users: 3), count: 5)
        for rule in [AggregationRule.mean, .trimmedMean(trim: 1), .median] {
            let averaging = FederatedAveraging(denominator: .fixed(20), rule: rule)
            #expect(averaging.averageDelta(same, parameterCount: 2) == [0.5, -1])
            // Without noise, every agent's per-user mean: the same again.
            let plain = FederatedAveraging(denominator: .contributingUsers, rule: rule)
            let delta = plain.averageDelta(same, parameterCount: 2)
            #expect(abs(delta[0] - 2.0 / 3) < 1e-6 && abs(delta[1] + 4.0 / 3) < 1e-6)
        }
    }

    @Test("The round coordinator applies its rule: an enrolled liar's update, within the norm bound, steers FedAvg but not the median")
    func coordinator() async throws {
        func round(_ rule: AggregationRule) async throws -> [Float] {
            let agents = ["a", "b", "c", "d", "e"]
            let coordinator = RoundCoordinator(
                parameters: [0, 0], round: 0, enrolled: Set(agents), minAgents: 5, maxUpdateNorm: 1e6, clipNorm: 1,
                averaging: FederatedAveraging(denominator: .fixed(10), rule: rule), maxUsers: 10_000)
            _ = await coordinator.open(deadline: .now + .seconds(60))
            for agent in agents.dropLast() {
                try await coordinator.accept(ModelUpdate(agentID: agent, round: 1, deltaSum: [1, 1], users: 2))
            }
            // 5,000 users declared, so a norm of 4,000 passes S × users.
            try await coordinator.accept(ModelUpdate(agentID: "e", round: 1, deltaSum: [-2_000, 3_464], users: 5_000))
            _ = await coordinator.close()
            return await coordinator.parameters
        }
        // Honest agents alone: 4 × [1, 1] / 10. The median of five is one of theirs: 5 × [1, 1] / 10.
        #expect(try await round(.median) == [0.5, 0.5])
        #expect(try await round(.trimmedMean(trim: 1)) == [0.5, 0.5])
        let dragged = try await round(.mean)
        #expect(dragged[0] < -150 && dragged[1] > 300, "FedAvg follows the liar: \(dragged)")
    }

    @Test("The configuration refuses a robust rule under secure aggregation, a trim of half the agents, an unknown rule")
    func configuration() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-byz-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("aggregator.yaml").path
        func load(_ lines: String) throws -> AggregatorConfiguration {
            try """
                key_directory: keys
                rounds: {expected_users: 1000}
                agents: [{id: a, public_key_file: a.public}, {id: b, public_key_file: b.public}, \
                {id: c, public_key_file: c.public}, {id: d, public_key_file: d.public}, {id: e, public_key_file: e.public}]
                \(lines)
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return try AggregatorConfiguration.load(path: path)
        }
        func refusedKey(_ lines: String) -> String? {
            do {
                _ = try load(lines)
                return nil
            } catch let ConfigError.invalidValue(key, _, _) {
                return key
            } catch {
                return "\(error)"
            }
        }
        #expect(try load("").serverOptimizer.rule == .mean)
        #expect(try load("secure_aggregation: {enabled: false}\nserver_optimizer: {aggregation: median}").serverOptimizer.rule
                == .median)
        #expect(try load("secure_aggregation: {enabled: false}\nserver_optimizer: {aggregation: trimmed_mean, trim: 2}")
                .serverOptimizer.rule == .trimmedMean(trim: 2))
        // Five agents switch secure aggregation on by default: a robust rule cannot see their updates.
        #expect(refusedKey("server_optimizer: {aggregation: median}") == "server_optimizer.aggregation")
        #expect(refusedKey("secure_aggregation: {enabled: false}\nserver_optimizer: {aggregation: trimmed_mean, trim: 3}")
                == "server_optimizer.trim")
        #expect(refusedKey("secure_aggregation: {enabled: false}\nserver_optimizer: {aggregation: trimmed_mean, trim: 0}")
                == "server_optimizer.aggregation")
        #expect(refusedKey("secure_aggregation: {enabled: false}\nserver_optimizer: {aggregation: krum}")
                == "server_optimizer.aggregation")
    }

    /// The in-process federation on simulated shoppers: 5 regions, the last one Byzantine when `attack` is set.
    private static let data = SimulationData.simulated(
        users: 3_000, days: 9, seed: 21, shape: LSTMShape(categories: 128, embedding: 16, hidden: 32, actionEmbedding: 4,
                                                          gapEmbedding: 4), keep: 21)

    private static func federation(rule: AggregationRule, attack: ByzantineAttack?) -> FederationSimulation.Result {
        var settings = FederationSimulation.Settings()
        settings.regions = 5
        settings.rounds = 25
        settings.samplingRate = 0.2
        settings.sequenceLength = 20
        settings.serverLearningRate = 0.02
        settings.evaluationUsers = 3_000
        settings.intermediateEvaluations = false
        settings.centralEpochs = 0
        settings.reproducible = true
        settings.seed = 4
        settings.aggregation = rule
        settings.attack = attack
        let simulation = FederationSimulation(settings: settings, shape: data.shape, outOfVocabulary: data.outOfVocabulary)
        return simulation.run(users: data.users).result
    }

    @Test("Sign-flipped and backdoor agents: FedAvg loses accuracy or is backdoored; trimmed mean and median stay within 2 points")
    func inProcessFederation() async throws {
        let results = try await offPool {
            let honest = Self.federation(rule: .mean, attack: nil)
            var runs: [(String, FederationSimulation.Result)] = []
            for rule in [AggregationRule.trimmedMean(trim: 1), .median] {
                runs.append(("honest, \(rule)", Self.federation(rule: rule, attack: nil)))
            }
            for attack in [ByzantineAttack.signFlip(10), .backdoor(boost: 10)] {
                for rule in [AggregationRule.mean, .trimmedMean(trim: 1), .median] {
                    runs.append(("\(attack), \(rule)", Self.federation(rule: rule, attack: attack)))
                }
            }
            return (honest, runs)
        }
        let (honest, runs) = results
        // For the auditor reading the log: every run's accuracy and backdoor success.
        print(String(format: "honest, mean: HR@10 %.4f", honest.hr10))
        for (name, result) in runs {
            print(String(format: "%@: HR@10 %.4f%@", name, result.hr10,
                         result.backdoorSuccess.map { String(format: ", backdoor success %.4f", $0) } ?? ""))
        }
        #expect(honest.hr10 > 0.25, "the honest federation learns (HR@10 \(honest.hr10))")
        let byName = Dictionary(uniqueKeysWithValues: runs)
        for (name, result) in runs {
            let points = 100 * (result.hr10 - honest.hr10)
            if name.hasSuffix(", mean") { continue }
            #expect(points > -2, "\(name): HR@10 \(result.hr10) vs honest \(honest.hr10)")
            if let success = result.backdoorSuccess { #expect(success < 0.02, "\(name): backdoor success \(success)") }
        }
        // Controls: without a robust rule the same attacks succeed.
        let flipped = try #require(byName["sign-flipped ×10.0, mean"])
        #expect(100 * (honest.hr10 - flipped.hr10) > 5, "sign flip under FedAvg: \(flipped.hr10) vs honest \(honest.hr10)")
        let backdoored = try #require(byName["backdoor boosted ×10.0, mean"])
        #expect((backdoored.backdoorSuccess ?? 0) > 0.05, "backdoor under FedAvg: \(backdoored.backdoorSuccess ?? 0)")
    }
}
