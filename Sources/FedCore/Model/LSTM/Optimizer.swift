/// Updates parameters from a gradient. Used by local training on the agents and, as the server
/// optimizer, on the aggregator (where the "gradient" is the negated average model delta).
package protocol Optimizer: Sendable {
    /// θ ← update(θ, g). `gradient` has the parameters' layout.
    mutating func step<S: ModelScalar>(_ parameters: inout [S], gradient: [S])
    /// The optimizer's internal state (momentum, moments, step count), for checkpoints.
    func stateSnapshot() -> [Double]
    /// Restores a snapshot taken by ``stateSnapshot()``; an empty one means a fresh optimizer.
    mutating func restore(_ snapshot: [Double])
}

/// Stochastic gradient descent with optional (heavy-ball) momentum: v ← μv + g, θ ← θ − ηv.
package struct SGD: Optimizer {
    package var learningRate: Double
    package var momentum: Double
    private var velocity: [Double] = []

    package init(learningRate: Double, momentum: Double = 0) {
        precondition(learningRate > 0 && momentum >= 0 && momentum < 1)
        self.learningRate = learningRate
        self.momentum = momentum
    }

    package func stateSnapshot() -> [Double] { velocity }
    package mutating func restore(_ snapshot: [Double]) { velocity = snapshot }

    package mutating func step<S: ModelScalar>(_ parameters: inout [S], gradient: [S]) {
        precondition(parameters.count == gradient.count)
        if momentum == 0 {
            let rate = S(learningRate)
            for index in parameters.indices { parameters[index] -= rate * gradient[index] }
            return
        }
        if velocity.count != parameters.count { velocity = [Double](repeating: 0, count: parameters.count) }
        for index in parameters.indices {
            velocity[index] = momentum * velocity[index] + gradient[index].doubleValue
            parameters[index] -= S(learningRate * velocity[index])
        }
    }
}

/// Adam (Kingma & Ba 2015) with bias correction.
package struct Adam: Optimizer {
    package var learningRate: Double
    package var beta1: Double
    package var beta2: Double
    package var epsilon: Double
    private var first: [Double] = []
    private var second: [Double] = []
    private var steps = 0

    package init(learningRate: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8) {
        precondition(learningRate > 0 && (0..<1).contains(beta1) && (0..<1).contains(beta2) && epsilon > 0)
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
    }

    /// [steps, m₁…m_n, v₁…v_n].
    package func stateSnapshot() -> [Double] { first.isEmpty ? [] : [Double(steps)] + first + second }

    package mutating func restore(_ snapshot: [Double]) {
        guard snapshot.count >= 3, (snapshot.count - 1) % 2 == 0 else {
            first = []
            second = []
            steps = 0
            return
        }
        let n = (snapshot.count - 1) / 2
        steps = Int(snapshot[0])
        first = Array(snapshot[1...n])
        second = Array(snapshot[(n + 1)...])
    }

    package mutating func step<S: ModelScalar>(_ parameters: inout [S], gradient: [S]) {
        precondition(parameters.count == gradient.count)
        if first.count != parameters.count {
            first = [Double](repeating: 0, count: parameters.count)
            second = first
            steps = 0
        }
        steps += 1
        let correction1 = 1 - pow(beta1, Double(steps)), correction2 = 1 - pow(beta2, Double(steps))
        let rate = learningRate * correction2.squareRoot() / correction1
        for index in parameters.indices {
            let g = gradient[index].doubleValue
            first[index] = beta1 * first[index] + (1 - beta1) * g
            second[index] = beta2 * second[index] + (1 - beta2) * g * g
            parameters[index] -= S(rate * first[index] / (second[index].squareRoot() + epsilon * correction2.squareRoot()))
        }
    }
}

import Foundation
