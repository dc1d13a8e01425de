import Dispatch

/// Data-parallel training over threads: the batch is split into contiguous slices of examples, each
/// slice runs on its own ``LSTMWorkspace``, and the gradients are combined exactly (step-weighted for
/// the mean loss; summed for clipped sums, which are sums already).
package final class ParallelTrainer<Scalar: ModelScalar>: @unchecked Sendable {
    // @unchecked: during a call each thread touches only its own Slot; slots are read after the join.
    package let shape: LSTMShape
    package let threads: Int
    private let slots: [Slot]

    private final class Slot {
        let workspace: LSTMWorkspace<Scalar>
        var gradient: [Scalar] = []
        var losses: LSTMWorkspace<Scalar>.Losses?
        var norms: [Double] = []
        var meanLosses: [Double] = []
        init(shape: LSTMShape) { workspace = LSTMWorkspace(shape: shape) }
    }

    package init(shape: LSTMShape, threads: Int) {
        precondition(threads >= 1)
        self.shape = shape
        self.threads = threads
        slots = (0..<threads).map { _ in Slot(shape: shape) }
    }

    private func slices(_ sequences: [EventSequence]) -> [ArraySlice<EventSequence>] {
        let parts = min(threads, max(1, sequences.count))
        let size = (sequences.count + parts - 1) / parts
        return stride(from: 0, to: sequences.count, by: size).map { sequences[$0..<min($0 + size, sequences.count)] }
    }

    /// Gradient of the mean loss over all valid steps of `sequences`; returns that mean loss.
    @discardableResult
    package func gradient(parameters: LSTMParameters<Scalar>, sequences: [EventSequence], steps: Int? = nil,
                          into gradient: inout [Scalar]) -> Double {
        let parts = slices(sequences)
        run(parts.count) { index in
            let slot = self.slots[index]
            slot.losses = slot.workspace.gradient(parameters: parameters,
                                                  batch: SequenceBatch(Array(parts[index]), steps: steps),
                                                  into: &slot.gradient)
        }
        let used = slots.prefix(parts.count)
        let total = max(1, used.reduce(0) { $0 + ($1.losses?.validSteps ?? 0) })
        gradient = [Scalar](repeating: 0, count: shape.layout.count)
        for slot in used {
            let weight = Scalar(Double(slot.losses?.validSteps ?? 0) / Double(total))
            for i in gradient.indices { gradient[i] += weight * slot.gradient[i] }
        }
        return used.reduce(0) { $0 + ($1.losses?.total ?? 0) } / Double(total)
    }

    /// Per-example results of ``clippedGradientSum(parameters:sequences:steps:clipNorm:into:)``, in order.
    package struct ExampleResults: Sendable {
        /// ‖g_b‖ before clipping.
        package var norms: [Double]
        /// Each example's own mean loss over its valid steps (0 without a valid step).
        package var meanLosses: [Double]
    }

    /// Σ_b g_b·min(1, S/‖g_b‖) over all `sequences`.
    @discardableResult
    package func clippedGradientSum(parameters: LSTMParameters<Scalar>, sequences: [EventSequence], steps: Int? = nil,
                                    clipNorm: Double, into sum: inout [Scalar]) -> ExampleResults {
        let parts = slices(sequences)
        run(parts.count) { index in
            let slot = self.slots[index]
            slot.gradient = [Scalar](repeating: 0, count: self.shape.layout.count)
            let batch = SequenceBatch(Array(parts[index]), steps: steps)
            let result = slot.workspace.clippedGradientSum(parameters: parameters, batch: batch, clipNorm: clipNorm,
                                                           into: &slot.gradient)
            slot.norms = result.norms
            slot.meanLosses = zip(result.losses.perSequence, batch.validSteps).map { $1 == 0 ? 0 : $0 / Double($1) }
        }
        sum = slots[0].gradient
        for slot in slots[1..<parts.count] { for i in sum.indices { sum[i] += slot.gradient[i] } }
        let used = slots.prefix(parts.count)
        return ExampleResults(norms: used.flatMap(\.norms), meanLosses: used.flatMap(\.meanLosses))
    }

    private func run(_ count: Int, _ body: @Sendable (Int) -> Void) {
        if count == 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: count, execute: body) }
    }
}
