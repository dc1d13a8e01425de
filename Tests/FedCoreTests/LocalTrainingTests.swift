@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Testing

@Suite("Local training round")
struct LocalTrainingTests {
    private let shape = LSTMShape(categories: 12, embedding: 4, hidden: 8, actionEmbedding: 2, gapEmbedding: 2)

    private func users(_ count: Int, seed: UInt64) -> [EventSequence] {
        var random = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            let length = 2 + Int(random.next() % 14)
            return EventSequence(categories: (0..<length).map { _ in Int32(random.next() % 12) },
                                 actions: (0..<length).map { _ in UInt8(random.next() % 4) },
                                 gaps: (0..<length).map { _ in UInt8(random.next() % 10) })
        }
    }

    private func hyperparameters(clipNorm: Double, steps: UInt32 = 1) -> RoundHyperparameters {
        RoundHyperparameters(samplingRate: 1, clipNorm: clipNorm, noiseMultiplier: 0, learningRate: 0.5,
                             localSteps: steps, sequenceLength: 10)
    }

    @Test("The batched one-step path equals training each user on its own copy", arguments: [0.05, 100.0])
    func batchedEqualsPerUser(clipNorm: Double) throws {
        let global = LSTMParameters<Float>(shape: shape, seed: 2)
        let training = LocalTraining(hyperparameters: hyperparameters(clipNorm: clipNorm), threads: 2)
        let sequences = training.truncated(users(9, seed: 4))
        let batched = try #require(training.runBatched(global: global, sequences: sequences))
        let perUser = try #require(training.runPerUser(global: global, sequences: sequences))
        #expect(training.runBatched(global: global, sequences: sequences, shouldStop: { true }) == nil,
                "stopped work keeps nothing")
        let worst = zip(batched.deltaSum, perUser.deltaSum).map { abs($0 - $1) }.max() ?? 0
        let scale = perUser.deltaSum.map(abs).max() ?? 1
        #expect(worst <= 1e-4 * scale, "largest difference \(worst) of \(scale)")
        #expect(batched.clippedUsers == perUser.clippedUsers)
        #expect(abs(batched.meanLoss - perUser.meanLoss) < 1e-4)
    }

    @Test("Each user's delta is clipped: the sum's norm is at most users × S, also with several local steps")
    func clippingBound() {
        let global = LSTMParameters<Float>(shape: shape, seed: 3)
        for steps: UInt32 in [1, 3] {
            let result = LocalTraining(hyperparameters: hyperparameters(clipNorm: 0.01, steps: steps))
                .run(global: global, users: users(7, seed: 5))
            let norm = result.deltaSum.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            #expect(norm <= 7 * 0.01 * (1 + 1e-4))
            #expect(result.clippedUsers == 7)
        }
    }

    @Test("Poisson sampling keeps each user with probability q (binomial bound, 5 sigma)")
    func sampling() {
        var training = LocalTraining(hyperparameters: hyperparameters(clipNorm: 1))
        training.hyperparameters.samplingRate = 0.1
        var random = SplitMix64(seed: 9)
        let population = users(20_000, seed: 1)
        let sampled = training.sample(population, random: &random).count
        let sigma = (20_000 * 0.1 * 0.9).squareRoot()
        #expect(abs(Double(sampled) - 2_000) < 5 * sigma, "sampled \(sampled)")
    }

    @Test("Stored events become model inputs through the catalog, with gap buckets from timestamps")
    func eventsToSequence() {
        let catalog = CategoryCatalog(itemsPerCategory: [500: 9, 600: 3], categories: 3)
        let events = [BehaviorEvent(user: 1, item: 1, category: 600, action: .view, timestamp: 1_600_000_000),
                      BehaviorEvent(user: 1, item: 2, category: 500, action: .cart, timestamp: 1_600_000_007),
                      BehaviorEvent(user: 1, item: 3, category: 777, action: .purchase, timestamp: 1_600_003_607)]
        let sequence = EventSequence(events: events, catalog: catalog)
        #expect(sequence.categories == [1, 0, 2])
        #expect(sequence.actions == [0, 1, 3])
        #expect(sequence.gaps == [0, 4, 12])  // first event; 1 + ⌊log₂ 8⌋; 1 + ⌊log₂ 3601⌋
    }
}
