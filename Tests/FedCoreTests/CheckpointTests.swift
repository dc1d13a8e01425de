@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

@Suite("Aggregator checkpoints")
struct CheckpointTests {
    private let shape = LSTMShape(categories: 5, embedding: 2, hidden: 3)

    private func store() throws -> CheckpointStore {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-ckpt-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return try CheckpointStore(path: directory.appendingPathComponent("aggregator.sqlite").path)
    }

    @Test("A checkpoint round-trips, and a later save replaces it whole")
    func roundTrip() throws {
        let store = try store()
        #expect(try store.load() == nil)
        let first = AggregatorCheckpoint(round: 3, modelVersion: 3, parameters: LSTMParameters(shape: shape, seed: 1),
                                         optimizerState: [0.5, -1], agents: ["a": .init(lastRound: 3, acceptedUpdates: 3,
                                                                                  ledgerSequence: 9, ledgerHead: "c0ffee"),
                                                                            "b": .init(lastRound: 2, rejectedUpdates: 1)])
        try store.save(first)
        #expect(try CheckpointStore(path: store.path).load() == first)
        let second = AggregatorCheckpoint(round: 4, modelVersion: 4, parameters: LSTMParameters(shape: shape, seed: 2),
                                          optimizerState: [], agents: ["a": .init(lastRound: 4, acceptedUpdates: 4)],
                                          thresholds: AlertThresholds(interestShift: -1.75, churnRisk: 6.5))
        try store.save(second)
        #expect(try store.load() == second)
        #expect(try CheckpointStore(path: store.path).load()?.thresholds == AlertThresholds(interestShift: -1.75, churnRisk: 6.5))
    }

    @Test("A coordinator resumed from a checkpoint continues exactly like one that never stopped (server momentum included)")
    func exactResume() async throws {
        let start = LSTMParameters<Float>(shape: shape, seed: 3)
        func makeCoordinator(parameters: [Float], round: UInt64, optimizerState: [Double]) -> RoundCoordinator {
            RoundCoordinator(parameters: parameters, round: round, enrolled: ["a", "b"], minAgents: 2, maxUpdateNorm: 1e6,
                             averaging: FederatedAveraging(denominator: .fixed(4),
                                                           serverOptimizer: SGD(learningRate: 0.8, momentum: 0.9)),
                             optimizerState: optimizerState)
        }
        func play(_ coordinator: RoundCoordinator) async throws {
            let round = await coordinator.open(deadline: .now + .seconds(60))
            for (index, agent) in ["a", "b"].enumerated() {
                let delta = (0..<start.values.count).map { Float(sin(Double($0 * 7 + index) + Double(round))) }
                try await coordinator.accept(ModelUpdate(agentID: agent, round: round, deltaSum: delta, users: 2))
            }
            _ = await coordinator.close()
        }
        let uninterrupted = makeCoordinator(parameters: start.values, round: 0, optimizerState: [])
        for _ in 0..<4 { try await play(uninterrupted) }

        let store = try store()
        var crashed = makeCoordinator(parameters: start.values, round: 0, optimizerState: [])
        for _ in 0..<2 { try await play(crashed) }
        try store.save(AggregatorCheckpoint(round: await crashed.round, modelVersion: await crashed.round,
                                            parameters: LSTMParameters(shape: shape, values: await crashed.parameters),
                                            optimizerState: await crashed.optimizerState, agents: [:]))
        let checkpoint = try #require(try CheckpointStore(path: store.path).load())
        crashed = makeCoordinator(parameters: checkpoint.parameters.values, round: checkpoint.round,
                                  optimizerState: checkpoint.optimizerState)
        for _ in 0..<2 { try await play(crashed) }
        #expect(await crashed.round == 4)
        #expect(await crashed.parameters == uninterrupted.parameters)
    }

    @Test("Adam's state survives a snapshot and restore")
    func adamState() {
        var adam = Adam(learningRate: 0.1)
        var parameters: [Float] = [1, 2]
        adam.step(&parameters, gradient: [0.5, -0.5])
        var restored = Adam(learningRate: 0.1)
        restored.restore(adam.stateSnapshot())
        var a = parameters, b = parameters
        adam.step(&a, gradient: [0.1, 0.2])
        restored.step(&b, gradient: [0.1, 0.2])
        #expect(a == b)
    }
}
