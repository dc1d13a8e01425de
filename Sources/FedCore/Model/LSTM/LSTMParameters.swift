/// All weights of the model in one flat vector (layout: ``ParameterLayout``), so that a model update,
/// its clipping and its noise are plain vector operations.
package struct LSTMParameters<Scalar: ModelScalar>: Sendable, Equatable {
    package let shape: LSTMShape
    package var values: [Scalar]

    package var layout: ParameterLayout { shape.layout }

    package init(shape: LSTMShape, values: [Scalar]) {
        precondition(values.count == shape.layout.count, "parameter vector does not match the shape")
        self.shape = shape
        self.values = values
    }

    /// PyTorch's default initialisation, from a seeded generator so runs are reproducible:
    /// embeddings 𝒩(0, 1), LSTM weights and biases 𝒰(±1/√H), linear layer 𝒰(±1/√H).
    package init(shape: LSTMShape, seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let layout = shape.layout
        var values = [Scalar](repeating: 0, count: layout.count)
        for range in [layout.embedding, layout.actionEmbedding, layout.gapEmbedding] {
            for index in range { values[index] = Scalar(random.nextGaussian()) }
        }
        let bound = 1 / Double(shape.hidden).squareRoot()
        for range in [layout.weightIH, layout.weightHH, layout.biasIH, layout.biasHH, layout.outputWeight,
                      layout.outputBias] {
            for index in range { values[index] = Scalar(random.nextUniform(in: -bound..<bound)) }
        }
        self.init(shape: shape, values: values)
    }

    /// The parameters converted to another precision.
    package func converted<Other: ModelScalar>(to _: Other.Type = Other.self) -> LSTMParameters<Other> {
        LSTMParameters<Other>(shape: shape, values: values.map { Other($0.doubleValue) })
    }
}

/// SplitMix64: a small, fast, seedable generator for reproducible initialisation and simulation.
/// Not for anything secret: privacy noise and sampling use libsodium's CSPRNG.
package struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    package init(seed: UInt64) { state = seed }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    package mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    package mutating func nextUniform(in range: Range<Double>) -> Double {
        range.lowerBound + (range.upperBound - range.lowerBound) * nextUnit()
    }

    /// Standard normal by Box–Muller.
    package mutating func nextGaussian() -> Double {
        let u1 = max(nextUnit(), .leastNonzeroMagnitude)
        let u2 = nextUnit()
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * .pi * u2)
    }
}

import Foundation
