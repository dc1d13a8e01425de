/// Per-example gradients in one batched pass: the core of user-level differential privacy.
///
/// An example is one user's sequence; its gradient is that of its own mean loss over its valid steps.
/// The forward and backward passes run batched (examples do not interact), then each example's weight
/// gradients are GEMMs over its strided rows, written into one reusable scratch vector: its global L2
/// norm is taken, and it is added to the clipped sum Σ_b g_b·min(1, S/‖g_b‖). Embedding gradients are
/// sparse: only rows the example touched are written, summed per row before the norm (a category seen
/// twice contributes one row), and zeroed again afterwards.
extension LSTMWorkspace {
    package struct ClippedGradients: Sendable {
        package var losses: Losses
        /// ‖g_b‖ for each example (0 for a sequence with fewer than two events).
        package var norms: [Double]
        /// min(1, S/‖g_b‖) for each example.
        package var scales: [Double]
    }

    /// Computes Σ_b g_b·min(1, S/‖g_b‖) into `clippedSum` (not divided by anything, no noise).
    ///
    /// - Parameters:
    ///   - clipNorm: S, the L2 bound of each example's contribution; must be positive.
    ///   - perExample: when given, receives each example's full gradient (for tests and audits).
    @discardableResult
    package func clippedGradientSum(parameters: LSTMParameters<Scalar>, batch: SequenceBatch, clipNorm: Double,
                                    into clippedSum: inout [Scalar],
                                    perExample: ((Int, [Scalar]) -> Void)? = nil) -> ClippedGradients {
        precondition(clipNorm > 0, "clip norm must be positive")
        let losses = forward(parameters: parameters, batch: batch)
        let weights = batch.validSteps.map { $0 == 0 ? Scalar(0) : 1 / Scalar($0) }
        backward(parameters: parameters, batch: batch, weights: weights)
        if clippedSum.count != layout.count { clippedSum = [Scalar](repeating: 0, count: layout.count) }
        var scratch = [Scalar](repeating: 0, count: layout.count)
        var norms = [Double](repeating: 0, count: batch.batchSize)
        var scales = [Double](repeating: 1, count: batch.batchSize)
        var touched: [Int] = []
        var seen = [Bool](repeating: false, count: shape.categories)
        for b in 0..<batch.batchSize where batch.validSteps[b] > 0 {
            let norm = exampleGradient(b, batch: batch, into: &scratch, touched: &touched, seen: &seen)
            let scale = Clipping.factor(norm: norm, bound: clipNorm)
            norms[b] = norm
            scales[b] = scale
            perExample?(b, scratch)
            if scale > 0 { addScaled(scratch, scale: Scalar(scale), touched: touched, into: &clippedSum) }
            clearEmbeddingRows(&scratch, touched: touched, seen: &seen)
        }
        return ClippedGradients(losses: losses, norms: norms, scales: scales)
    }

    /// Writes example b's gradient into `scratch` (dense parts overwritten, embedding rows added
    /// into an all-zero embedding section) and returns its global L2 norm.
    private func exampleGradient(_ b: Int, batch: SequenceBatch, into scratch: inout [Scalar], touched: inout [Int],
                                 seen: inout [Bool]) -> Double {
        let B = batchSize, H = shape.hidden, D = shape.inputSize, C = shape.categories, E = shape.embedding
        let G = 4 * H
        let length = batch.lengths[b]
        touched.removeAll(keepingCapacity: true)
        return scratch.withUnsafeMutableBufferPointer { g in
            let grad = g.baseAddress!
            let dlogits = logits.pointer + b * C, h = hidden.pointer + b * H
            let dz = gateGradients.pointer + b * G, x = inputs.pointer + b * D
            Scalar.gemm(transposeA: true, transposeB: false, m: C, n: H, k: length, alpha: 1, a: dlogits, lda: B * C,
                        b: h, ldb: B * H, beta: 0, c: grad + layout.outputWeight.lowerBound, ldc: H)
            Self.columnSums(dlogits, rows: length, columns: C, rowStride: B * C, into: grad + layout.outputBias.lowerBound)
            Scalar.gemm(transposeA: true, transposeB: false, m: G, n: D, k: length, alpha: 1, a: dz, lda: B * G,
                        b: x, ldb: B * D, beta: 0, c: grad + layout.weightIH.lowerBound, ldc: D)
            if length > 1 {
                Scalar.gemm(transposeA: true, transposeB: false, m: G, n: H, k: length - 1, alpha: 1, a: dz + B * G,
                            lda: B * G, b: h, ldb: B * H, beta: 0, c: grad + layout.weightHH.lowerBound, ldc: H)
            } else {
                (grad + layout.weightHH.lowerBound).update(repeating: 0, count: layout.weightHH.count)
            }
            Self.columnSums(dz, rows: length, columns: G, rowStride: B * G, into: grad + layout.biasIH.lowerBound)
            (grad + layout.biasHH.lowerBound).update(from: grad + layout.biasIH.lowerBound, count: G)
            for range in [layout.actionEmbedding, layout.gapEmbedding] {
                (grad + range.lowerBound).update(repeating: 0, count: range.count)
            }
            for t in 0..<length {
                let category = Int(batch.categories[t * B + b])
                if !seen[category] {
                    seen[category] = true
                    touched.append(category)
                }
                scatterInputGradient(row: t * B + b, batch: batch, scale: 1, into: grad)
            }
            var squares = Self.sumOfSquares(grad + layout.actionEmbedding.lowerBound,
                                            count: layout.count - layout.actionEmbedding.lowerBound)
            for category in touched {
                squares += Self.sumOfSquares(grad + layout.embedding.lowerBound + category * E, count: E)
            }
            return squares.squareRoot()
        }
    }

    private func addScaled(_ scratch: [Scalar], scale: Scalar, touched: [Int], into sum: inout [Scalar]) {
        let E = shape.embedding
        let denseStart = layout.actionEmbedding.lowerBound
        scratch.withUnsafeBufferPointer { g in
            sum.withUnsafeMutableBufferPointer { s in
                for index in denseStart..<layout.count { s[index] += scale * g[index] }
                for category in touched {
                    let start = layout.embedding.lowerBound + category * E
                    for index in start..<(start + E) { s[index] += scale * g[index] }
                }
            }
        }
    }

    private func clearEmbeddingRows(_ scratch: inout [Scalar], touched: [Int], seen: inout [Bool]) {
        let E = shape.embedding
        for category in touched {
            let start = layout.embedding.lowerBound + category * E
            for index in start..<(start + E) { scratch[index] = 0 }
            seen[category] = false
        }
    }

    static func sumOfSquares(_ values: UnsafePointer<Scalar>, count: Int) -> Double {
        Scalar.sumOfSquares(values, count: count)
    }
}
