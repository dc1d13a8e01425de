/// Forward and backward passes of the model over a padded batch, with every activation kept for
/// backpropagation through time. Buffers are reused across batches, so training allocates nothing
/// per batch once the largest batch has been seen. One workspace per thread.
///
/// Layout is time-major: row `t·B + b` of every activation matrix is sequence b at step t. Matrix
/// products go through ``ModelScalar/gemm``; one example's rows across time are a strided view
/// (leading dimension B·width), which is how per-example gradients stay GEMMs.
package final class LSTMWorkspace<Scalar: ModelScalar> {
    package let shape: LSTMShape
    let layout: ParameterLayout

    // Activations, [T·B × width].
    let inputs = ScalarBuffer<Scalar>()      // x_t, D wide
    let gates = ScalarBuffer<Scalar>()       // i, f, g, o after their nonlinearity, 4H wide
    let cells = ScalarBuffer<Scalar>()       // c_t, H
    let cellTanh = ScalarBuffer<Scalar>()    // tanh(c_t), H
    let hidden = ScalarBuffer<Scalar>()      // h_t, H
    let logits = ScalarBuffer<Scalar>()      // logits, then dL/dlogits after backward, C
    let logSumExp = ScalarBuffer<Scalar>()   // per row
    // Gradients with respect to activations.
    let gateGradients = ScalarBuffer<Scalar>()   // dL/dz, 4H
    let hiddenFromOutput = ScalarBuffer<Scalar>() // dL/dh through the output layer, H
    let inputGradients = ScalarBuffer<Scalar>()  // dL/dx, D
    let carryHidden = ScalarBuffer<Scalar>()     // dL/dh_{t} from step t+1, B × H
    let carryCell = ScalarBuffer<Scalar>()       // dL/dc_{t} from step t+1, B × H
    let zeros = ScalarBuffer<Scalar>()           // h_{-1} = c_{-1} = 0, B × H
    let gateBias = ScalarBuffer<Scalar>()        // b_ih + b_hh, 4H

    private(set) var batchSize = 0
    private(set) var steps = 0

    package init(shape: LSTMShape) {
        self.shape = shape
        self.layout = shape.layout
    }

    /// Losses of the last forward pass.
    package struct Losses: Sendable {
        /// Σ over valid steps of cross-entropy (natural log).
        package var total: Double
        /// Per sequence: Σ over its valid steps.
        package var perSequence: [Double]
        package var validSteps: Int
        /// Mean over all valid steps of the batch (the reference `loss`).
        package var mean: Double { validSteps == 0 ? 0 : total / Double(validSteps) }
    }

    // MARK: - Forward

    /// Runs the model over `batch`, keeping activations for ``backward(parameters:batch:weights:)``.
    @discardableResult
    package func forward(parameters: LSTMParameters<Scalar>, batch: SequenceBatch) -> Losses {
        precondition(parameters.shape == shape, "parameters of another shape")
        let B = batch.batchSize, T = batch.steps, H = shape.hidden, D = shape.inputSize, C = shape.categories
        let G = 4 * H, rows = T * B
        batchSize = B
        steps = T
        let x = inputs.reserve(rows * D), z = gates.reserve(rows * G), c = cells.reserve(rows * H)
        let tc = cellTanh.reserve(rows * H), h = hidden.reserve(rows * H), out = logits.reserve(rows * C)
        let lse = logSumExp.reserve(rows)
        let zero = zeros.reserve(B * H)
        zeros.zero(B * H)

        parameters.values.withUnsafeBufferPointer { p in
            let w = p.baseAddress!
            gatherInputs(w: w, batch: batch, into: x)
            // All input projections at once: Z = X · W_ihᵀ.
            Scalar.gemm(transposeA: false, transposeB: true, m: rows, n: G, k: D, alpha: 1, a: x, lda: D,
                        b: w + layout.weightIH.lowerBound, ldb: D, beta: 0, c: z, ldc: G)
            let bias = gateBias.reserve(G)
            for j in 0..<G { bias[j] = w[layout.biasIH.lowerBound + j] + w[layout.biasHH.lowerBound + j] }
            for t in 0..<T {
                let zt = z + t * B * G
                let hPrev = t == 0 ? UnsafePointer(zero) : UnsafePointer(h + (t - 1) * B * H)
                let cPrev = t == 0 ? UnsafePointer(zero) : UnsafePointer(c + (t - 1) * B * H)
                Scalar.gemm(transposeA: false, transposeB: true, m: B, n: G, k: H, alpha: 1, a: hPrev, lda: H,
                            b: w + layout.weightHH.lowerBound, ldb: H, beta: 1, c: zt, ldc: G)
                for b in 0..<B {
                    let row = t * B + b
                    Scalar.lstmCell(gates: zt + b * G, bias: bias, previousCell: cPrev + b * H, cell: c + row * H,
                                    cellTanh: tc + row * H, hidden: h + row * H, size: H)
                }
            }
            // Logits for every step: H · W_outᵀ + b_out.
            Scalar.gemm(transposeA: false, transposeB: true, m: rows, n: C, k: H, alpha: 1, a: h, lda: H,
                        b: w + layout.outputWeight.lowerBound, ldb: H, beta: 0, c: out, ldc: C)
            let outputBias = w + layout.outputBias.lowerBound
            for row in 0..<rows {
                let logit = out + row * C
                for k in 0..<C { logit[k] += outputBias[k] }
            }
            for row in 0..<rows where batch.targets[row] >= 0 {
                lse[row] = Scalar.logSumExp(out + row * C, count: C)
            }
        }
        var perSequence = [Double](repeating: 0, count: B)
        var total = 0.0
        for row in 0..<rows where batch.targets[row] >= 0 {
            let loss = (lse[row] - out[row * C + Int(batch.targets[row])]).doubleValue
            perSequence[row % B] += loss
            total += loss
        }
        return Losses(total: total, perSequence: perSequence, validSteps: batch.totalValidSteps)
    }

    private func gatherInputs(w: UnsafePointer<Scalar>, batch: SequenceBatch, into x: UnsafeMutablePointer<Scalar>) {
        let E = shape.embedding, A = shape.actionEmbedding, Q = shape.gapEmbedding, D = shape.inputSize
        for row in 0..<(batch.steps * batch.batchSize) {
            let target = x + row * D
            let category = Int(batch.categories[row])
            precondition(category >= 0 && category < shape.categories, "category index out of range")
            target.update(from: w + layout.embedding.lowerBound + category * E, count: E)
            if A > 0 {
                let action = min(Int(batch.actions[row]), LSTMShape.actionCount - 1)
                (target + E).update(from: w + layout.actionEmbedding.lowerBound + action * A, count: A)
            }
            if Q > 0 {
                let gap = min(Int(batch.gaps[row]), LSTMShape.gapBuckets - 1)
                (target + E + A).update(from: w + layout.gapEmbedding.lowerBound + gap * Q, count: Q)
            }
        }
    }

    // MARK: - Backward

    /// Backpropagates the last forward pass, leaving dL/dlogits in `logits`, dL/dz in `gateGradients`
    /// and dL/dx in `inputGradients`.
    ///
    /// - Parameter weights: the factor of each sequence's summed cross-entropy in the loss being
    ///   differentiated: 1/N for the batch mean (N valid steps), 1/n_b for per-example means.
    func backward(parameters: LSTMParameters<Scalar>, batch: SequenceBatch, weights: [Scalar]) {
        let B = batchSize, T = steps, H = shape.hidden, D = shape.inputSize, C = shape.categories
        let G = 4 * H, rows = T * B
        let out = logits.pointer, lse = logSumExp.pointer, z = gates.pointer, c = cells.pointer
        let tc = cellTanh.pointer
        let dz = gateGradients.reserve(rows * G), dhOut = hiddenFromOutput.reserve(rows * H)
        let dx = inputGradients.reserve(rows * D)
        let dh = carryHidden.reserve(B * H), dc = carryCell.reserve(B * H)
        carryHidden.zero(B * H)
        carryCell.zero(B * H)
        let zero = zeros.pointer

        // dL/dlogits = weight · (softmax − onehot) on valid rows, 0 elsewhere.
        for row in 0..<rows {
            let logit = out + row * C
            let target = Int(batch.targets[row])
            guard target >= 0 else {
                logit.update(repeating: 0, count: C)
                continue
            }
            let weight = weights[row % B]
            Scalar.scaledSoftmax(logit, count: C, logSumExp: lse[row], weight: weight)
            logit[target] -= weight
        }
        parameters.values.withUnsafeBufferPointer { p in
            let w = p.baseAddress!
            Scalar.gemm(transposeA: false, transposeB: false, m: rows, n: H, k: C, alpha: 1, a: out, lda: C,
                        b: w + layout.outputWeight.lowerBound, ldb: H, beta: 0, c: dhOut, ldc: H)
            for t in stride(from: T - 1, through: 0, by: -1) {
                let cPrev = t == 0 ? UnsafePointer(zero) : UnsafePointer(c + (t - 1) * B * H)
                for b in 0..<B {
                    let row = t * B + b
                    let gate = z + row * G, dgate = dz + row * G
                    let dhRow = dhOut + row * H, carryH = dh + b * H, carryC = dc + b * H
                    let tct = tc + row * H, cp = cPrev + b * H
                    for j in 0..<H {
                        let i = gate[j], f = gate[H + j], g = gate[2 * H + j], o = gate[3 * H + j]
                        let gradH = dhRow[j] + carryH[j]
                        let tanhCell = tct[j]
                        let gradC = gradH * o * (1 - tanhCell * tanhCell) + carryC[j]
                        dgate[j] = gradC * g * i * (1 - i)
                        dgate[H + j] = gradC * cp[j] * f * (1 - f)
                        dgate[2 * H + j] = gradC * i * (1 - g * g)
                        dgate[3 * H + j] = gradH * tanhCell * o * (1 - o)
                        carryC[j] = gradC * f
                    }
                }
                // dL/dh_{t-1} through the recurrence: dZ_t · W_hh.
                Scalar.gemm(transposeA: false, transposeB: false, m: B, n: H, k: G, alpha: 1, a: dz + t * B * G,
                            lda: G, b: w + layout.weightHH.lowerBound, ldb: H, beta: 0, c: dh, ldc: H)
            }
            Scalar.gemm(transposeA: false, transposeB: false, m: rows, n: D, k: G, alpha: 1, a: dz, lda: G,
                        b: w + layout.weightIH.lowerBound, ldb: D, beta: 0, c: dx, ldc: D)
        }
    }

    // MARK: - Batch gradient

    /// Forward and backward over `batch`; writes dL/dθ of the batch mean loss into `gradient`.
    @discardableResult
    package func gradient(parameters: LSTMParameters<Scalar>, batch: SequenceBatch,
                          into gradient: inout [Scalar]) -> Losses {
        let losses = forward(parameters: parameters, batch: batch)
        let N = max(1, losses.validSteps)
        backward(parameters: parameters, batch: batch, weights: Array(repeating: 1 / Scalar(N), count: batch.batchSize))
        let B = batchSize, T = steps, H = shape.hidden, D = shape.inputSize, C = shape.categories
        let G = 4 * H, rows = T * B
        if gradient.count != layout.count { gradient = [Scalar](repeating: 0, count: layout.count) }
        gradient.withUnsafeMutableBufferPointer { g in
            let grad = g.baseAddress!
            let dlogits = logits.pointer, h = hidden.pointer, dz = gateGradients.pointer, x = inputs.pointer
            Scalar.gemm(transposeA: true, transposeB: false, m: C, n: H, k: rows, alpha: 1, a: dlogits, lda: C,
                        b: h, ldb: H, beta: 0, c: grad + layout.outputWeight.lowerBound, ldc: H)
            Self.columnSums(dlogits, rows: rows, columns: C, rowStride: C, into: grad + layout.outputBias.lowerBound)
            Scalar.gemm(transposeA: true, transposeB: false, m: G, n: D, k: rows, alpha: 1, a: dz, lda: G,
                        b: x, ldb: D, beta: 0, c: grad + layout.weightIH.lowerBound, ldc: D)
            if T > 1 {
                Scalar.gemm(transposeA: true, transposeB: false, m: G, n: H, k: (T - 1) * B, alpha: 1,
                            a: dz + B * G, lda: G, b: h, ldb: H, beta: 0, c: grad + layout.weightHH.lowerBound, ldc: H)
            } else {
                (grad + layout.weightHH.lowerBound).update(repeating: 0, count: layout.weightHH.count)
            }
            Self.columnSums(dz, rows: rows, columns: G, rowStride: G, into: grad + layout.biasIH.lowerBound)
            (grad + layout.biasHH.lowerBound).update(from: grad + layout.biasIH.lowerBound, count: G)
            for range in [layout.embedding, layout.actionEmbedding, layout.gapEmbedding] {
                (grad + range.lowerBound).update(repeating: 0, count: range.count)
            }
            for t in 0..<T {
                for b in 0..<B where t < batch.lengths[b] {
                    scatterInputGradient(row: t * B + b, batch: batch, scale: 1, into: grad)
                }
            }
        }
        return losses
    }

    /// Adds `scale` × dL/dx of `row` into the embedding rows it came from.
    func scatterInputGradient(row: Int, batch: SequenceBatch, scale: Scalar, into grad: UnsafeMutablePointer<Scalar>) {
        let E = shape.embedding, A = shape.actionEmbedding, Q = shape.gapEmbedding, D = shape.inputSize
        let dx = inputGradients.pointer + row * D
        let embeddingRow = grad + layout.embedding.lowerBound + Int(batch.categories[row]) * E
        for k in 0..<E { embeddingRow[k] += scale * dx[k] }
        if A > 0 {
            let actionRow = grad + layout.actionEmbedding.lowerBound + min(Int(batch.actions[row]), 3) * A
            for k in 0..<A { actionRow[k] += scale * dx[E + k] }
        }
        if Q > 0 {
            let gapRow = grad + layout.gapEmbedding.lowerBound
                + min(Int(batch.gaps[row]), LSTMShape.gapBuckets - 1) * Q
            for k in 0..<Q { gapRow[k] += scale * dx[E + A + k] }
        }
    }

    /// `out[j] = Σ_r m[r·rowStride + j]`.
    static func columnSums(_ m: UnsafePointer<Scalar>, rows: Int, columns: Int, rowStride: Int,
                           into out: UnsafeMutablePointer<Scalar>) {
        out.update(repeating: 0, count: columns)
        for r in 0..<rows {
            let row = m + r * rowStride
            for j in 0..<columns { out[j] += row[j] }
        }
    }
}
