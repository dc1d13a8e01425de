@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

/// The model against PyTorch's float64 reference (`../shared/reference/lstm_reference.json`):
/// forward values, loss, gradients, per-example gradients and norms, and the DP-SGD clipped sum.
@Suite("LSTM vs PyTorch reference", .enabled(if: SharedData.exists(Reference.path), SharedData.absentMessage(Reference.path)))
struct LSTMOracleTests {
    private let reference: Reference

    init() throws { reference = try Reference() }

    /// |ours − theirs| ≤ tolerance·max(|theirs|, 10⁻³·max|tensor|): relative, with a floor for entries
    /// near zero set by the tensor's own scale (a gradient entry of 1e-17 has no relative meaning).
    private func expectClose<S: ModelScalar>(_ ours: [S], _ theirs: [Double], tolerance: Double, _ what: String,
                                             sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(ours.count == theirs.count, "\(what): \(ours.count) values, reference has \(theirs.count)",
                sourceLocation: sourceLocation)
        let scale = theirs.map(abs).max() ?? 0
        var worst = 0.0
        for (a, b) in zip(ours, theirs) {
            let error = abs(a.doubleValue - b) / max(abs(b), 1e-3 * scale, 1e-300)
            worst = max(worst, error)
        }
        #expect(worst <= tolerance, "\(what): worst relative error \(worst) > \(tolerance)", sourceLocation: sourceLocation)
    }

    private func check<S: ModelScalar>(_: S.Type, tolerance: Double) {
        let parameters = LSTMParameters<S>(shape: reference.shape, values: reference.parameters.map { S($0) })
        let workspace = LSTMWorkspace<S>(shape: reference.shape)
        let batch = reference.batch
        var gradient: [S] = []
        let losses = workspace.gradient(parameters: parameters, batch: batch, into: &gradient)
        expectClose([S(losses.mean)], [reference.loss], tolerance: tolerance, "loss")
        expectClose(gradient, reference.gradients, tolerance: tolerance, "batch gradient")

        // Forward values at every step (time-major here, batch-major in the reference).
        _ = workspace.forward(parameters: parameters, batch: batch)
        let (B, T, H, C) = (batch.batchSize, batch.steps, reference.shape.hidden, reference.shape.categories)
        func batchMajor(_ buffer: ScalarBuffer<S>, width: Int) -> [S] {
            var out: [S] = []
            for b in 0..<B { for t in 0..<T { for k in 0..<width { out.append(buffer.pointer[(t * B + b) * width + k]) } } }
            return out
        }
        expectClose(batchMajor(workspace.hidden, width: H), reference.h, tolerance: tolerance, "h")
        expectClose(batchMajor(workspace.cells, width: H), reference.c, tolerance: tolerance, "c")
        expectClose(batchMajor(workspace.logits, width: C), reference.logits, tolerance: tolerance, "logits")
        expectClose(losses.perSequence.enumerated().map { S($0.element / Double(batch.validSteps[$0.offset])) },
                    reference.perExampleLoss, tolerance: tolerance, "per-example loss")

        var clipped: [S] = []
        var perExample: [[S]] = Array(repeating: [], count: B)
        let result = workspace.clippedGradientSum(parameters: parameters, batch: batch, clipNorm: reference.clipNorm,
                                                  into: &clipped) { perExample[$0] = $1 }
        for b in 0..<B {
            expectClose(perExample[b], reference.perExampleGradients[b], tolerance: tolerance, "gradient of example \(b)")
        }
        expectClose(result.norms.map { S($0) }, reference.norms, tolerance: tolerance, "per-example norms")
        expectClose(result.scales.map { S($0) }, reference.clipScales, tolerance: tolerance, "clip scales")
        expectClose(clipped, reference.clippedSum, tolerance: tolerance, "clipped sum")
        let clippedNorm = clipped.reduce(0.0) { $0 + $1.doubleValue * $1.doubleValue }.squareRoot()
        expectClose([S(clippedNorm)], [reference.clippedSumNorm], tolerance: tolerance, "clipped sum norm")
    }

    @Test("Double matches the float64 reference to 1e-9 relative")
    func double() { check(Double.self, tolerance: 1e-9) }

    @Test("Float matches the float64 reference to 1e-4 relative")
    func float() { check(Float.self, tolerance: 1e-4) }

    @Test("The batch gradient is the step-weighted sum of per-example gradients")
    func batchIsWeightedSumOfExamples() {
        let parameters = LSTMParameters<Double>(shape: reference.shape, values: reference.parameters)
        let workspace = LSTMWorkspace<Double>(shape: reference.shape)
        var gradient: [Double] = []
        workspace.gradient(parameters: parameters, batch: reference.batch, into: &gradient)
        var weighted = [Double](repeating: 0, count: gradient.count)
        var clipped: [Double] = []
        let n = reference.batch.validSteps, total = Double(n.reduce(0, +))
        workspace.clippedGradientSum(parameters: parameters, batch: reference.batch, clipNorm: 1e9, into: &clipped) { b, g in
            for i in g.indices { weighted[i] += Double(n[b]) / total * g[i] }
        }
        expectClose(weighted, gradient, tolerance: 1e-12, "Σ (n_b/N) g_b")
    }
}

/// The reference document, flattened into our parameter order (which is PyTorch's).
struct Reference {
    static let path = "reference/lstm_reference.json"
    let shape: LSTMShape
    let batch: SequenceBatch
    let parameters: [Double]
    let gradients: [Double]
    let loss: Double
    let h: [Double], c: [Double], logits: [Double]
    let perExampleLoss: [Double]
    let perExampleGradients: [[Double]]
    let norms: [Double]
    let clipNorm: Double
    let clipScales: [Double]
    let clippedSum: [Double]
    let clippedSumNorm: Double

    init() throws {
        let json = try SharedData.json(Self.path)
        func dict(_ value: Any?) -> [String: Any] { value as? [String: Any] ?? [:] }
        func doubles(_ value: Any?) -> [Double] { (value as? [Any] ?? []).compactMap { ($0 as? NSNumber)?.doubleValue } }
        func tensor(_ value: Any?) -> [Double] { doubles(dict(value)["data"]) }
        func tensors(_ value: Any?) -> [Double] { (value as? [Any] ?? []).flatMap { tensor($0) } }
        let dims = dict(json["dims"])
        let C = (dims["C"] as? Int) ?? 0, E = (dims["E"] as? Int) ?? 0, H = (dims["H"] as? Int) ?? 0
        let B = (dims["B"] as? Int) ?? 0, T = (dims["T"] as? Int) ?? 0
        shape = LSTMShape(categories: C, embedding: E, hidden: H)
        let inputs = dict(json["inputs"])
        let ids = tensor(inputs["ids"]).map { Int32($0) }
        let lengths = (inputs["lengths"] as? [Int]) ?? []
        batch = SequenceBatch((0..<B).map { b in EventSequence(categories: Array(ids[(b * T)..<(b * T + lengths[b])])) },
                              steps: T)
        parameters = tensors(json["parameters"])
        gradients = tensors(json["gradients"])
        let forward = dict(json["forward"])
        loss = (forward["loss"] as? NSNumber)?.doubleValue ?? .nan
        h = tensor(forward["h"])
        c = tensor(forward["c"])
        logits = tensor(forward["logits"])
        let perExample = dict(json["per_example"])
        perExampleLoss = doubles(perExample["loss"])
        perExampleGradients = (perExample["gradients"] as? [Any] ?? []).map { tensors($0) }
        norms = doubles(perExample["grad_global_l2_norm"])
        let dp = dict(json["dp_sgd"])
        clipNorm = (dp["clip_norm"] as? NSNumber)?.doubleValue ?? .nan
        clipScales = doubles(dp["clip_scale"])
        clippedSum = tensors(dp["clipped_sum"])
        clippedSumNorm = (dp["clipped_sum_global_l2_norm"] as? NSNumber)?.doubleValue ?? .nan
    }
}
