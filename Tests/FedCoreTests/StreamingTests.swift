@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

@Suite("Streaming step")
struct StreamingTests {
    @Test("Streaming one event at a time equals the batched forward pass step by step",
          arguments: [LSTMShape(categories: 37, embedding: 8, hidden: 16, actionEmbedding: 4, gapEmbedding: 4),
                      LSTMShape(categories: 64, embedding: 5, hidden: 7)])
    func equalsBatchedForward(shape: LSTMShape) {
        let parameters = LSTMParameters<Float>(shape: shape, seed: 5)
        var random = SplitMix64(seed: 9)
        let length = 30
        let sequence = EventSequence(
            categories: (0..<length).map { _ in Int32(random.next() % UInt64(shape.categories)) },
            actions: (0..<length).map { _ in UInt8(random.next() % 4) },
            gaps: (0..<length).map { _ in UInt8(random.next() % UInt64(LSTMShape.gapBuckets)) })
        let workspace = LSTMWorkspace<Float>(shape: shape)
        workspace.forward(parameters: parameters, batch: SequenceBatch([sequence]))
        let scorer = StreamingScorer(parameters: parameters)
        var state = [Float](repeating: .nan, count: scorer.stateSize)
        let H = shape.hidden, C = shape.categories
        state.withUnsafeMutableBufferPointer { s in
            let state = s.baseAddress!
            scorer.reset(state)
            for t in 0..<length {
                let surprise = scorer.step(state, category: Int(sequence.categories[t]), action: Int(sequence.actions[t]),
                                           gap: Int(sequence.gaps[t]))
                if t > 0 {
                    let batchSurprise = workspace.logSumExp.pointer[t - 1]
                        - workspace.logits.pointer[(t - 1) * C + Int(sequence.categories[t])]
                    #expect(abs(surprise - batchSurprise) <= 1e-4 * max(1, abs(batchSurprise)), "surprise at step \(t)")
                }
                for j in 0..<H {
                    #expect(abs(state[j] - workspace.hidden.pointer[t * H + j]) <= 1e-5, "h at step \(t)")
                    #expect(abs(state[H + j] - workspace.cells.pointer[t * H + j]) <= 1e-5, "c at step \(t)")
                }
                let row = workspace.logits.pointer + t * C
                let maximum = (0..<C).map { row[$0] }.max() ?? 0
                let total = (0..<C).reduce(Float(0)) { $0 + Foundation.exp(row[$1] - maximum) }
                let worst = (0..<C).map { abs(scorer.distribution[$0] - Foundation.exp(row[$0] - maximum) / total) }.max() ?? 0
                #expect(worst <= 1e-6, "distribution at step \(t)")
                #expect(abs(scorer.distribution.reduce(0, +) - 1) <= 1e-5)
            }
        }
    }

    @Test("Vectorised exp stays within 1e-6 relative of libm over the scoring range")
    func fastExp() {
        var worst: Float = 0
        var x: Float = -80
        while x < 80 {
            let lanes = SIMD8<Float>((0..<8).map { x + Float($0) * 0.0123 })
            let fast = FastMath.exp(lanes)
            for lane in 0..<8 { worst = max(worst, abs(fast[lane] - Foundation.exp(lanes[lane])) / Foundation.exp(lanes[lane])) }
            x += 0.37
        }
        #expect(worst < 1e-6, "worst relative error \(worst)")
        #expect(FastMath.exp(SIMD8(repeating: -1000)).min() >= 0)
    }
}
