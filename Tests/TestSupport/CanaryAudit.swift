import FedIO
import FedLogic
package import FedModel
import FedNode
import FedTools
import Foundation

/// The arithmetic of one-run auditing (Steinke, Nasr, Jagielski 2023, "Privacy Auditing with One (1)
/// Training Run"): if a mechanism is ε-DP, the number of correct guesses among k guesses about
/// independently included canaries is stochastically dominated by Binomial(k, e^ε/(1 + e^ε)) (their
/// Theorem 3.1; the δ term adds at most m·δ to the tail). Used by ``ShopperCanaryAudit``.
package enum CanaryAudit {
    /// The largest ε such that P[Binomial(guesses, e^ε/(1+e^ε)) ≥ correct] < β: every ε below it is rejected.
    package static func epsilonLowerBound(correct: Int, guesses: Int, beta: Double) -> Double {
        func tail(_ epsilon: Double) -> Double {
            let p = 1 / (1 + exp(-epsilon))
            return binomialTail(atLeast: correct, trials: guesses, probability: p)
        }
        guard tail(0) < beta else { return 0 }
        var low = 0.0, high = 1.0
        while tail(high) < beta && high < 100 { high *= 2 }
        for _ in 0..<60 {
            let middle = (low + high) / 2
            if tail(middle) < beta { low = middle } else { high = middle }
        }
        return low
    }

    /// P[Binomial(n, p) ≥ k], summed in log space.
    package static func binomialTail(atLeast k: Int, trials n: Int, probability p: Double) -> Double {
        guard k > 0 else { return 1 }
        guard k <= n else { return 0 }
        var logTail = -Double.infinity
        for i in k...n {
            let term = lgamma(Double(n + 1)) - lgamma(Double(i + 1)) - lgamma(Double(n - i + 1))
                + Double(i) * log(p) + Double(n - i) * log1p(-p)
            logTail = RDP.logAdd(logTail, term)
        }
        return exp(logTail)
    }
}
