/// Scores one event at a time against the model: the edge agent's hot path.
///
/// A user's state is `2H + 1` floats: the LSTM's h and c, and log Σ exp of the logits that state
/// predicts. With them, the surprise of a new event, −log p(category | previous state), costs one
/// H-long dot product; the state update and the new next-category distribution cost
/// O(H·(E + H) + H·C). Nothing is allocated per event: states live wherever the caller keeps them
/// (e.g. one contiguous arena for all users) and the distribution is written to a scratch buffer
/// owned by the scorer. One scorer per thread.
package final class StreamingScorer {
    package let shape: LSTMShape
    private let layout: ParameterLayout
    private let weights: UnsafeMutablePointer<Float>
    /// W_ihᵀ [D × 4H], W_hhᵀ [H × 4H] and W_outᵀ [H × C], packed into 64-column panels: each product is
    /// a register-blocked sum of scaled rows that streams the weights once, in order, with no
    /// horizontal reductions.
    private let inputWeightsT: UnsafeMutablePointer<Float>
    private let recurrentWeightsT: UnsafeMutablePointer<Float>
    private let outputWeightsT: UnsafeMutablePointer<Float>
    private let gateBias: UnsafeMutablePointer<Float>   // b_ih + b_hh, summed once
    private let input: UnsafeMutablePointer<Float>      // x_t, D
    private let gates: UnsafeMutablePointer<Float>      // 4H
    private let logits: UnsafeMutablePointer<Float>     // C
    private let probabilities: UnsafeMutablePointer<Float>  // C
    /// log Σ exp of the logits of the all-zero initial state.
    package let initialLogSumExp: Float

    /// Floats per user state: h (H), c (H), log-sum-exp (1).
    package var stateSize: Int { 2 * shape.hidden + 1 }

    package init(parameters: LSTMParameters<Float>) {
        shape = parameters.shape
        layout = shape.layout
        let H = shape.hidden, C = shape.categories
        weights = .allocate(capacity: layout.count)
        weights.initialize(from: parameters.values, count: layout.count)
        let D = shape.inputSize
        func transposed(_ range: Range<Int>, rows: Int, columns: Int) -> UnsafeMutablePointer<Float> {
            var out = [Float](repeating: 0, count: rows * columns)
            for r in 0..<rows { for k in 0..<columns { out[k * rows + r] = parameters.values[range.lowerBound + r * columns + k] } }
            return out.withUnsafeBufferPointer { FastMath.packPanels($0.baseAddress!, rows: columns, columns: rows) }
        }
        inputWeightsT = transposed(layout.weightIH, rows: 4 * H, columns: D)
        recurrentWeightsT = transposed(layout.weightHH, rows: 4 * H, columns: H)
        outputWeightsT = transposed(layout.outputWeight, rows: C, columns: H)
        gateBias = .allocate(capacity: 4 * H)
        for j in 0..<(4 * H) { gateBias[j] = parameters.values[layout.biasIH.lowerBound + j] + parameters.values[layout.biasHH.lowerBound + j] }
        input = .allocate(capacity: shape.inputSize)
        gates = .allocate(capacity: 4 * H)
        logits = .allocate(capacity: C)
        probabilities = .allocate(capacity: C)
        initialLogSumExp = FastMath.softmax(weights + layout.outputBias.lowerBound, count: C, into: probabilities)
    }

    deinit {
        for pointer in [weights, inputWeightsT, recurrentWeightsT, outputWeightsT, gateBias, input, gates, logits,
                        probabilities] { pointer.deallocate() }
    }

    /// Sets a fresh user's state: zero h and c, the initial log-sum-exp.
    package func reset(_ state: UnsafeMutablePointer<Float>) {
        state.update(repeating: 0, count: 2 * shape.hidden)
        state[2 * shape.hidden] = initialLogSumExp
    }

    /// The next-category distribution written by the last ``step(_:category:action:gap:)``.
    package var distribution: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: probabilities, count: shape.categories) }

    /// −log p(`category` | state), without changing the state.
    @inline(__always)
    package func surprise(of category: Int, in state: UnsafePointer<Float>) -> Float {
        let H = shape.hidden
        let logit = FastMath.dot(weights + layout.outputWeight.lowerBound + category * H, state, count: H)
            + weights[layout.outputBias.lowerBound + category]
        return state[2 * H] - logit
    }

    /// Consumes one event: returns its surprise under the previous state, advances the state, and
    /// leaves the new next-category distribution in ``distribution``.
    @discardableResult
    package func step(_ state: UnsafeMutablePointer<Float>, category: Int, action: Int = 0, gap: Int = 0) -> Float {
        let H = shape.hidden, D = shape.inputSize, C = shape.categories
        let E = shape.embedding, A = shape.actionEmbedding, Q = shape.gapEmbedding
        let category = min(max(category, 0), C - 1)
        let surprise = surprise(of: category, in: state)
        input.update(from: weights + layout.embedding.lowerBound + category * E, count: E)
        if A > 0 { (input + E).update(from: weights + layout.actionEmbedding.lowerBound + min(max(action, 0), 3) * A, count: A) }
        if Q > 0 {
            (input + E + A).update(from: weights + layout.gapEmbedding.lowerBound
                                   + min(max(gap, 0), LSTMShape.gapBuckets - 1) * Q, count: Q)
        }
        let h = state, c = state + H
        gates.update(from: gateBias, count: 4 * H)
        FastMath.accumulate(panels: inputWeightsT, rows: D, columns: 4 * H, scaledBy: input, into: gates)
        FastMath.accumulate(panels: recurrentWeightsT, rows: H, columns: 4 * H, scaledBy: h, into: gates)
        var j = 0
        while j + 8 <= H {
            let i = FastMath.sigmoid(FastMath.load(gates + j)), f = FastMath.sigmoid(FastMath.load(gates + H + j))
            let g = FastMath.tanh(FastMath.load(gates + 2 * H + j)), o = FastMath.sigmoid(FastMath.load(gates + 3 * H + j))
            let cell = f * FastMath.load(c + j) + i * g
            FastMath.store(cell, c + j)
            FastMath.store(o * FastMath.tanh(cell), h + j)
            j += 8
        }
        while j < H {
            defer { j += 1 }
            let i = Float.sigmoid(gates[j]), f = Float.sigmoid(gates[H + j])
            let g = Float.tanh(gates[2 * H + j]), o = Float.sigmoid(gates[3 * H + j])
            let cell = f * c[j] + i * g
            c[j] = cell
            h[j] = o * Float.tanh(cell)
        }
        logits.update(from: weights + layout.outputBias.lowerBound, count: C)
        FastMath.accumulate(panels: outputWeightsT, rows: H, columns: C, scaledBy: h, into: logits)
        state[2 * H] = FastMath.softmax(logits, count: C, into: probabilities)
        return surprise
    }

    // Array-backed forms of the calls above for callers outside the model layer, which holds the
    // only pointers: each lends the array's storage for the call and keeps nothing.

    /// Sets `state` (``stateSize`` floats) to a fresh user's state.
    package func reset(_ state: inout [Float]) {
        precondition(state.count == stateSize, "state has \(state.count) floats, expected \(stateSize)")
        state.withUnsafeMutableBufferPointer { reset($0.baseAddress!) }
    }

    /// ``step(_:category:action:gap:)`` on an array-held user state.
    @discardableResult
    package func step(_ state: inout [Float], category: Int, action: Int = 0, gap: Int = 0) -> Float {
        precondition(state.count == stateSize, "state has \(state.count) floats, expected \(stateSize)")
        return state.withUnsafeMutableBufferPointer { step($0.baseAddress!, category: category, action: action, gap: gap) }
    }

    /// −log p(`category` | `state`) for an array-held user state.
    package func surprise(of category: Int, in state: [Float]) -> Float {
        precondition(state.count == stateSize, "state has \(state.count) floats, expected \(stateSize)")
        return state.withUnsafeBufferPointer { surprise(of: min(max(category, 0), shape.categories - 1), in: $0.baseAddress!) }
    }

    /// The `count` most probable next categories after the last step, most probable first, skipping
    /// category `excluding` (e.g. the out-of-vocabulary bucket).
    package func topCategories(count: Int, excluding: Int) -> [Int32] {
        var best: [(Float, Int32)] = []
        for index in 0..<shape.categories where index != excluding {
            let p = probabilities[index]
            if best.count < count {
                best.append((p, Int32(index)))
                best.sort { $0.0 > $1.0 }
            } else if let last = best.last, p > last.0 {
                best[best.count - 1] = (p, Int32(index))
                best.sort { $0.0 > $1.0 }
            }
        }
        return best.map(\.1)
    }

    /// p(category) before any event: the model's unconditional next-category distribution (a fresh
    /// user's state). A DP-trained global model's view of the population, usable as a detector's prior.
    package func initialDistribution() -> [Double] {
        var state = [Float](repeating: 0, count: stateSize)
        reset(&state)
        return (0..<shape.categories).map { Double.exp(-Double(surprise(of: $0, in: state))) }
    }
}
