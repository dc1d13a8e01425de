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
    static func log1p(_ x: Self) -> Self
    init(_ value: Double)
    var doubleValue: Double { get }
}

extension ModelScalar {
    @inline(__always) static func sigmoid(_ x: Self) -> Self { 1 / (1 + exp(-x)) }
}

/// Makes OpenBLAS single-threaded: FedDrift parallelises across examples itself, and nested
/// threading on two cores only adds contention.
package enum BLAS {
    package static let configured: Bool = {
        openblas_set_num_threads(1)
        return true
    }()
    package static var threads: Int { Int(openblas_get_num_threads()) }
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
    @inline(__always) package static func log1p(_ x: Float) -> Float { Foundation.log1p(x) }
    package var doubleValue: Double { Double(self) }
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
    @inline(__always) package static func log1p(_ x: Double) -> Double { Foundation.log1p(x) }
    package var doubleValue: Double { self }
}
