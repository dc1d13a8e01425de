import FedIO
import FedLogic
package import FedModel
import FedNode
import Foundation

/// `edge-agent bench train|score`: the model's speed on this machine, in one process.
package enum ModelBenchmark {
    package struct TrainResult: Sendable {
        package let model: String
        package let threads: Int
        package let plainSequencesPerSecond: Double
        package let clippedSequencesPerSecond: Double
        /// Multiply-adds ×2 of the GEMMs of one sequence's forward and backward pass.
        package let flopsPerSequence: Double

        package var jsonLine: String {
            String(format: "{\"model\":\"%@\",\"threads\":%d,\"plain_seq_per_s\":%.1f,\"clipped_seq_per_s\":%.1f,"
                   + "\"plain_gflops\":%.2f,\"clipped_gflops\":%.2f}", model, threads, plainSequencesPerSecond,
                   clippedSequencesPerSecond, plainSequencesPerSecond * flopsPerSequence / 1e9,
                   clippedSequencesPerSecond * flopsPerSequence / 1e9)
        }
    }

    package struct ScoreResult: Sendable {
        package let model: String
        package let p50Microseconds: Double
        package let p99Microseconds: Double
        package let eventsPerSecond: Double

        package var jsonLine: String {
            String(format: "{\"model\":\"%@\",\"p50_us\":%.3f,\"p99_us\":%.3f,\"events_per_s\":%.0f}", model,
                   p50Microseconds, p99Microseconds, eventsPerSecond)
        }
    }

    /// Sequence length used for each preset (the benchmark protocol).
    package static func steps(for model: String) -> Int { model == "medium" ? 100 : 50 }

    static func randomSequences(_ shape: LSTMShape, count: Int, length: Int, seed: UInt64) -> [EventSequence] {
        var random = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            EventSequence(categories: (0..<length).map { _ in Int32(random.next() % UInt64(shape.categories)) },
                          actions: (0..<length).map { _ in UInt8(random.next() % 4) },
                          gaps: (0..<length).map { _ in UInt8(random.next() % UInt64(LSTMShape.gapBuckets)) })
        }
    }

    static func flopsPerSequence(_ shape: LSTMShape, steps: Int) -> Double {
        let H = Double(shape.hidden), D = Double(shape.inputSize), C = Double(shape.categories), T = Double(steps)
        let forward = 2 * T * (4 * H * D + 4 * H * H + H * C)
        return 3 * forward  // backward: gradients w.r.t. both operands of every product
    }

    /// Trains for about `seconds` per mode and reports sequences per second.
    package static func train(model: String, shape: LSTMShape, threads: Int, batchSize: Int = 64,
                              seconds: Double = 5) -> TrainResult {
        let steps = steps(for: model)
        let batches = (0..<8).map { randomSequences(shape, count: batchSize, length: steps, seed: UInt64($0)) }
        var parameters = LSTMParameters<Float>(shape: shape, seed: 1)
        let trainer = ParallelTrainer<Float>(shape: shape, threads: threads)
        var gradient: [Float] = []
        func measure(_ body: (Int) -> Void) -> Double {
            body(0)  // warm-up: buffers reach their size
            var done = 0
            let start = ContinuousClock.now
            while (ContinuousClock.now - start).inSeconds < seconds {
                body(done)
                done += 1
            }
            return Double(done * batchSize) / (ContinuousClock.now - start).inSeconds
        }
        var optimizer = SGD(learningRate: 1e-3)
        let plain = measure { index in
            trainer.gradient(parameters: parameters, sequences: batches[index % batches.count], into: &gradient)
            optimizer.step(&parameters.values, gradient: gradient)
        }
        let clipped = measure { index in
            trainer.clippedGradientSum(parameters: parameters, sequences: batches[index % batches.count], clipNorm: 1,
                                       into: &gradient)
            for i in gradient.indices { gradient[i] /= Float(batchSize) }
            optimizer.step(&parameters.values, gradient: gradient)
        }
        return TrainResult(model: model, threads: threads, plainSequencesPerSecond: plain,
                           clippedSequencesPerSecond: clipped, flopsPerSequence: flopsPerSequence(shape, steps: steps))
    }

    /// Scores `events` single events (batch 1) through the streaming step, timing each.
    package static func score(model: String, shape: LSTMShape, events: Int = 200_000) -> ScoreResult {
        let scorer = StreamingScorer(parameters: LSTMParameters<Float>(shape: shape, seed: 1))
        var random = SplitMix64(seed: 7)
        let categories = (0..<4096).map { _ in Int(random.next() % UInt64(shape.categories)) }
        var state = [Float](repeating: 0, count: scorer.stateSize)
        var latencies = [Double](repeating: 0, count: events)
        let start = ContinuousClock.now
        // unsafe: times the raw pointer step alone (the array form adds a precondition and a borrow)
        state.withUnsafeMutableBufferPointer { buffer in
            let state = buffer.baseAddress!
            scorer.reset(state)
            for index in 0..<events {
                let before = ContinuousClock.now
                scorer.step(state, category: categories[index & 4095], action: index & 3, gap: index % 7)
                latencies[index] = (ContinuousClock.now - before).inSeconds
            }
        }
        let total = (ContinuousClock.now - start).inSeconds
        latencies.sort()
        return ScoreResult(model: model, p50Microseconds: latencies[events / 2] * 1e6,
                           p99Microseconds: latencies[events * 99 / 100] * 1e6, eventsPerSecond: Double(events) / total)
    }

}
