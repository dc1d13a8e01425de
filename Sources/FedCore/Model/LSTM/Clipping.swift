/// Clipping of one user's contribution to L2 norm S, robust to adversarial inputs: a contribution
/// whose norm is not finite (NaN or ∞ anywhere) is dropped entirely (factor 0, and callers skip the
/// add, since 0 × NaN is NaN); otherwise it is scaled by min(1, S/‖u‖).
package enum Clipping {
    package static func factor(norm: Double, bound: Double) -> Double {
        guard norm.isFinite else { return 0 }
        return min(1, bound / max(norm, .leastNonzeroMagnitude))
    }
}
