@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Testing

/// Central finite differences of the loss against the analytic gradients, with the optional action
/// and time-gap inputs switched on, on random shapes and ragged batches (Double precision).
@Suite("LSTM gradients vs finite differences")
struct LSTMGradientTests {
    private struct Case: Sendable, CustomTestStringConvertible {
        let shape: LSTMShape
        let seed: UInt64
        var testDescription: String { "\(shape) seed \(seed)" }
    }

    private static let cases: [Case] = [
        Case(shape: LSTMShape(categories: 7, embedding: 3, hidden: 4, actionEmbedding: 2, gapEmbedding: 2), seed: 1),
        Case(shape: LSTMShape(categories: 5, embedding: 2, hidden: 3, actionEmbedding: 3, gapEmbedding: 0), seed: 2),
        Case(shape: LSTMShape(categories: 9, embedding: 4, hidden: 5, actionEmbedding: 0, gapEmbedding: 3), seed: 3),
    ]

    private static func randomBatch(_ shape: LSTMShape, seed: UInt64) -> SequenceBatch {
        var random = SplitMix64(seed: seed &* 7919)
        let sequences = (0..<4).map { _ -> EventSequence in
            let length = 1 + Int(random.next() % 6)  // includes a sequence with no target
            return EventSequence(
                categories: (0..<length).map { _ in Int32(random.next() % UInt64(shape.categories)) },
                actions: (0..<length).map { _ in UInt8(random.next() % 4) },
                gaps: (0..<length).map { _ in UInt8(random.next() % UInt64(LSTMShape.gapBuckets)) })
        }
        return SequenceBatch(sequences)
    }

    @Test("Analytic batch and per-example gradients equal central differences", arguments: cases)
    private func finiteDifferences(_ testCase: Case) {
        let shape = testCase.shape
        var parameters = LSTMParameters<Double>(shape: shape, seed: testCase.seed)
        let batch = Self.randomBatch(shape, seed: testCase.seed)
        let workspace = LSTMWorkspace<Double>(shape: shape)
        var gradient: [Double] = []
        workspace.gradient(parameters: parameters, batch: batch, into: &gradient)
        var perExample: [[Double]] = Array(repeating: [], count: batch.batchSize)
        var clipped: [Double] = []
        workspace.clippedGradientSum(parameters: parameters, batch: batch, clipNorm: 1e12, into: &clipped) {
            perExample[$0] = $1
        }
        let step = 1e-5  // round-off ≈ ε·L/step ≈ 1e-11, truncation ≈ step² ≈ 1e-10
        var worst = 0.0, worstExample = 0.0
        for index in 0..<shape.layout.count {
            let original = parameters.values[index]
            parameters.values[index] = original + step
            let plus = workspace.forward(parameters: parameters, batch: batch)
            parameters.values[index] = original - step
            let minus = workspace.forward(parameters: parameters, batch: batch)
            parameters.values[index] = original
            let numeric = (plus.mean - minus.mean) / (2 * step)
            worst = max(worst, abs(numeric - gradient[index]) / max(abs(numeric), 1e-3))
            for b in 0..<batch.batchSize where batch.validSteps[b] > 0 {
                let n = Double(batch.validSteps[b])
                let numericExample = (plus.perSequence[b] - minus.perSequence[b]) / n / (2 * step)
                worstExample = max(worstExample, abs(numericExample - perExample[b][index]) / max(abs(numericExample), 1e-3))
            }
        }
        #expect(worst < 1e-6, "batch gradient: worst relative error \(worst)")
        #expect(worstExample < 1e-6, "per-example gradients: worst relative error \(worstExample)")
        // With no clipping the clipped sum is the plain sum of per-example gradients.
        let plainSum = (0..<shape.layout.count).map { i in perExample.reduce(0) { $0 + ($1.isEmpty ? 0 : $1[i]) } }
        #expect(zip(plainSum, clipped).allSatisfy { abs($0 - $1) <= 1e-12 * max(1, abs($0)) })
    }

    @Test("Clipping bounds every example's contribution and leaves small ones unchanged", arguments: [0.01, 0.3, 10.0])
    func clippingBound(clipNorm: Double) {
        let shape = Self.cases[0].shape
        let parameters = LSTMParameters<Double>(shape: shape, seed: 11)
        let batch = Self.randomBatch(shape, seed: 11)
        let workspace = LSTMWorkspace<Double>(shape: shape)
        var clipped: [Double] = []
        var norms: [Double] = []
        let result = workspace.clippedGradientSum(parameters: parameters, batch: batch, clipNorm: clipNorm, into: &clipped) {
            _, g in norms.append(g.reduce(0) { $0 + $1 * $1 }.squareRoot())
        }
        for (norm, scale) in zip(result.norms, result.scales) where norm > 0 {
            #expect(norm * scale <= clipNorm * (1 + 1e-12))
            if norm <= clipNorm { #expect(scale == 1) }
        }
        #expect(zip(norms, result.norms.filter { $0 > 0 }).allSatisfy { abs($0 - $1) <= 1e-12 * max(1, $0) })
        let total = clipped.reduce(0) { $0 + $1 * $1 }.squareRoot()
        #expect(total <= clipNorm * Double(batch.batchSize) * (1 + 1e-12))
    }
}
