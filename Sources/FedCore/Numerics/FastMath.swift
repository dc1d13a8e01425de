/// Vectorised single-precision kernels for the scoring hot path.
package enum FastMath {
    /// eˣ for eight lanes: Cephes' `expf` range reduction and polynomial (relative error ≈ 2e-7 over
    /// the clamped range [-87.3, 88.7]; inputs below underflow to ≈ 1e-38, never to NaN).
    @inline(__always)
    package static func exp(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let clamped = x.clamped(lowerBound: SIMD8(repeating: -87.3), upperBound: SIMD8(repeating: 88.7))
        let n = (clamped * 1.442_695_04).rounded(.toNearestOrEven)
        let r = clamped - n * 0.693_359_375 + n * 2.121_944_4e-4
        var p = SIMD8<Float>(repeating: 1.987_569_1e-4)
        p = p * r + 1.398_199_9e-3
        p = p * r + 8.333_452e-3
        p = p * r + 4.166_579_6e-2
        p = p * r + 1.666_666_5e-1
        p = p * r + 5.000_000_1e-1
        p = p * (r * r) + r + 1
        let exponent = (SIMD8<Int32>(n, rounding: .towardZero) &+ 127) &<< 23
        return p * unsafeBitCast(exponent, to: SIMD8<Float>.self)
    }

    /// Σ a[i]·b[i] with eight-lane accumulators.
    @inline(__always)
    package static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        var accumulator0 = SIMD8<Float>(), accumulator1 = SIMD8<Float>()
        var index = 0
        while index + 16 <= count {
            accumulator0 += UnsafeRawPointer(a + index).loadUnaligned(as: SIMD8<Float>.self)
                * UnsafeRawPointer(b + index).loadUnaligned(as: SIMD8<Float>.self)
            accumulator1 += UnsafeRawPointer(a + index + 8).loadUnaligned(as: SIMD8<Float>.self)
                * UnsafeRawPointer(b + index + 8).loadUnaligned(as: SIMD8<Float>.self)
            index += 16
        }
        var total = (accumulator0 + accumulator1).sum()
        while index < count {
            total += a[index] * b[index]
            index += 1
        }
        return total
    }

    /// out[r] = bias[r] + Σ_k m[r·columns + k]·v[k] for `rows` rows.
    @inline(__always)
    package static func matrixVector(_ m: UnsafePointer<Float>, rows: Int, columns: Int, _ v: UnsafePointer<Float>,
                                     bias: UnsafePointer<Float>?, into out: UnsafeMutablePointer<Float>) {
        for row in 0..<rows {
            out[row] = dot(m + row * columns, v, count: columns) + (bias?[row] ?? 0)
        }
    }

    /// Softmax of `logits` into `probabilities`; returns log Σ exp(logits).
    package static func softmax(_ logits: UnsafePointer<Float>, count: Int, into probabilities: UnsafeMutablePointer<Float>)
        -> Float
    {
        var maximum = -Float.infinity
        for index in 0..<count { maximum = max(maximum, logits[index]) }
        var sum = SIMD8<Float>()
        var index = 0
        let shift = SIMD8<Float>(repeating: maximum)
        while index + 8 <= count {
            let e = exp(UnsafeRawPointer(logits + index).loadUnaligned(as: SIMD8<Float>.self) - shift)
            UnsafeMutableRawPointer(probabilities + index).storeBytes(of: e, as: SIMD8<Float>.self)
            sum += e
            index += 8
        }
        var total = sum.sum()
        while index < count {
            let e = Float.exp(logits[index] - maximum)
            probabilities[index] = e
            total += e
            index += 1
        }
        let inverse = 1 / total
        for index in 0..<count { probabilities[index] *= inverse }
        return maximum + Float.log(total)
    }
}
