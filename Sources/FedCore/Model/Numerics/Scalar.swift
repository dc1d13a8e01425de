internal import COpenBLAS
import Foundation

/// The floating-point types the model runs in: `Float` for training and scoring, `Double` for the
/// oracle tests against PyTorch's float64 reference.
///
/// Matrix products go to OpenBLAS (`cblas_sgemm`/`cblas_dgemm`, row-major); everything elementwise is
/// Swift. Matrices are row-major with an explicit leading dimension, so a strided view (e.g. one
/// example's rows across time steps in a time-major batch) is a GEMM operand without copying.
package protocol ModelScalar: BinaryFloatingPoint, Sendable, Codable where Self.Stride == Self {
    /// C ← α·op(A)·op(B) + β·C, with op(X) = Xᵀ when the flag is set. A is m×k after op, B is k×n.
    static func gemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Self,
                     a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int, beta: Self,
                     c: UnsafeMutablePointer<Self>, ldc: Int)
    static func exp(_ x: Self) -> Self
    static func log(_ x: Self) -> Self
    static func tanh(_ x: Self) -> Self
    init(_ value: Double)
    var doubleValue: Double { get }

    /// Σ values[k]² accumulated in Double precision terms of the result.
    static func sumOfSquares(_ values: UnsafePointer<Self>, count: Int) -> Double
    /// log Σ exp(row[k]) over `count` entries.
    static func logSumExp(_ row: UnsafePointer<Self>, count: Int) -> Self
    /// row[k] ← weight · exp(row[k] − logSumExp): the softmax scaled by a loss weight.
    static func scaledSoftmax(_ row: UnsafeMutablePointer<Self>, count: Int, logSumExp: Self, weight: Self)
    /// One LSTM cell row: `gates` holds the pre-activations without biases and receives i, f, g, o;
    /// writes c_t, tanh(c_t) and h_t.
    static func lstmCell(gates: UnsafeMutablePointer<Self>, bias: UnsafePointer<Self>, previousCell: UnsafePointer<Self>,
                         cell: UnsafeMutablePointer<Self>, cellTanh: UnsafeMutablePointer<Self>,
                         hidden: UnsafeMutablePointer<Self>, size: Int)
}

extension ModelScalar {
    @inline(__always) static func sigmoid(_ x: Self) -> Self { 1 / (1 + exp(-x)) }

    /// Exact (libm) versions, used by Double and for the tails of the vectorised Float versions.
    static func scalarLogSumExp(_ row: UnsafePointer<Self>, count: Int) -> Self {
        var maximum = -Self.infinity
        for k in 0..<count { maximum = max(maximum, row[k]) }
        var sum: Self = 0
        for k in 0..<count { sum += exp(row[k] - maximum) }
        return maximum + log(sum)
    }

    static func scalarScaledSoftmax(_ row: UnsafeMutablePointer<Self>, count: Int, logSumExp: Self, weight: Self) {
        for k in 0..<count { row[k] = weight * exp(row[k] - logSumExp) }
    }

    static func scalarLSTMCell(gates: UnsafeMutablePointer<Self>, bias: UnsafePointer<Self>,
                               previousCell: UnsafePointer<Self>, cell: UnsafeMutablePointer<Self>,
                               cellTanh: UnsafeMutablePointer<Self>, hidden: UnsafeMutablePointer<Self>,
                               size H: Int, from start: Int = 0) {
        for j in start..<H {
            let i = sigmoid(gates[j] + bias[j])
            let f = sigmoid(gates[H + j] + bias[H + j])
            let g = tanh(gates[2 * H + j] + bias[2 * H + j])
            let o = sigmoid(gates[3 * H + j] + bias[3 * H + j])
            gates[j] = i
            gates[H + j] = f
            gates[2 * H + j] = g
            gates[3 * H + j] = o
            let c = f * previousCell[j] + i * g
            cell[j] = c
            let t = tanh(c)
            cellTanh[j] = t
            hidden[j] = o * t
        }
    }
}

/// Makes OpenBLAS single-threaded: FedDrift parallelises across examples itself, and nested
/// threading on two cores only adds contention.
package enum BLAS {
    package static let configured: Bool = {
        openblas_set_num_threads(1)
        return true
    }()
}

extension Float: ModelScalar {
    package static func gemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float,
                             c: UnsafeMutablePointer<Float>, ldc: Int) {
        _ = BLAS.configured
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }
    @inline(__always) package static func exp(_ x: Float) -> Float { Foundation.exp(x) }
    @inline(__always) package static func log(_ x: Float) -> Float { Foundation.log(x) }
    @inline(__always) package static func tanh(_ x: Float) -> Float { Foundation.tanh(x) }
    package var doubleValue: Double { Double(self) }

    package static func sumOfSquares(_ values: UnsafePointer<Float>, count: Int) -> Double {
        // Float partial sums of at most 4096 terms, added in Double: vector speed, Double-like accuracy.
        var total = 0.0, start = 0
        while start < count {
            let length = min(4096, count - start)
            total += Double(FastMath.dot(values + start, values + start, count: length))
            start += length
        }
        return total
    }

    package static func logSumExp(_ row: UnsafePointer<Float>, count: Int) -> Float {
        var maximum8 = SIMD8<Float>(repeating: -.infinity)
        var k = 0
        while k + 8 <= count {
            maximum8 = FastMath.maximum(maximum8, FastMath.load(row + k))
            k += 8
        }
        var maximum = maximum8.max()
        for index in k..<count { maximum = max(maximum, row[index]) }
        let shift = SIMD8<Float>(repeating: maximum)
        var sum8 = SIMD8<Float>()
        k = 0
        while k + 8 <= count {
            sum8 += FastMath.exp(FastMath.load(row + k) - shift)
            k += 8
        }
        var sum = sum8.sum()
        for index in k..<count { sum += Foundation.exp(row[index] - maximum) }
        return maximum + Foundation.log(sum)
    }

    package static func scaledSoftmax(_ row: UnsafeMutablePointer<Float>, count: Int, logSumExp: Float, weight: Float) {
        let shift = SIMD8<Float>(repeating: logSumExp), scale = SIMD8<Float>(repeating: weight)
        var k = 0
        while k + 8 <= count {
            FastMath.store(scale * FastMath.exp(FastMath.load(row + k) - shift), row + k)
            k += 8
        }
        for index in k..<count { row[index] = weight * Foundation.exp(row[index] - logSumExp) }
    }

    package static func lstmCell(gates: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>,
                                 previousCell: UnsafePointer<Float>, cell: UnsafeMutablePointer<Float>,
                                 cellTanh: UnsafeMutablePointer<Float>, hidden: UnsafeMutablePointer<Float>, size H: Int) {
        var j = 0
        while j + 8 <= H {
            let i = FastMath.sigmoid(FastMath.load(gates + j) + FastMath.load(bias + j))
            let f = FastMath.sigmoid(FastMath.load(gates + H + j) + FastMath.load(bias + H + j))
            let g = FastMath.tanh(FastMath.load(gates + 2 * H + j) + FastMath.load(bias + 2 * H + j))
            let o = FastMath.sigmoid(FastMath.load(gates + 3 * H + j) + FastMath.load(bias + 3 * H + j))
            FastMath.store(i, gates + j)
            FastMath.store(f, gates + H + j)
            FastMath.store(g, gates + 2 * H + j)
            FastMath.store(o, gates + 3 * H + j)
            let c = f * FastMath.load(previousCell + j) + i * g
            FastMath.store(c, cell + j)
            let t = FastMath.tanh(c)
            FastMath.store(t, cellTanh + j)
            FastMath.store(o * t, hidden + j)
            j += 8
        }
        scalarLSTMCell(gates: gates, bias: bias, previousCell: previousCell, cell: cell, cellTanh: cellTanh,
                       hidden: hidden, size: H, from: j)
    }
}

extension Double: ModelScalar {
    package static func gemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Double,
                             a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int, beta: Double,
                             c: UnsafeMutablePointer<Double>, ldc: Int) {
        _ = BLAS.configured
        cblas_dgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }
    @inline(__always) package static func exp(_ x: Double) -> Double { Foundation.exp(x) }
    @inline(__always) package static func log(_ x: Double) -> Double { Foundation.log(x) }
    @inline(__always) package static func tanh(_ x: Double) -> Double { Foundation.tanh(x) }
    package var doubleValue: Double { self }

    package static func sumOfSquares(_ values: UnsafePointer<Double>, count: Int) -> Double {
        var total = 0.0
        for index in 0..<count { total += values[index] * values[index] }
        return total
    }

    package static func logSumExp(_ row: UnsafePointer<Double>, count: Int) -> Double {
        scalarLogSumExp(row, count: count)
    }
    package static func scaledSoftmax(_ row: UnsafeMutablePointer<Double>, count: Int, logSumExp: Double, weight: Double) {
        scalarScaledSoftmax(row, count: count, logSumExp: logSumExp, weight: weight)
    }
    package static func lstmCell(gates: UnsafeMutablePointer<Double>, bias: UnsafePointer<Double>,
                                 previousCell: UnsafePointer<Double>, cell: UnsafeMutablePointer<Double>,
                                 cellTanh: UnsafeMutablePointer<Double>, hidden: UnsafeMutablePointer<Double>, size H: Int) {
        scalarLSTMCell(gates: gates, bias: bias, previousCell: previousCell, cell: cell, cellTanh: cellTanh,
                       hidden: hidden, size: H)
    }
}
