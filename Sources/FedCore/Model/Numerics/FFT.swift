import Foundation

/// Double-precision discrete Fourier transforms and the convolutions built on them, for the privacy
/// loss distribution accountant (compositions of pmfs with 10⁵–10⁶ points). Radix-2, iterative,
/// in place on split real and imaginary arrays; twiddles are computed directly per index (no
/// recurrence), so the error stays at a few ulps times log₂ n.
package enum FFT {
    /// The smallest power of two ≥ `count` (at least 1).
    package static func size(atLeast count: Int) -> Int {
        var size = 1
        while size < count { size <<= 1 }
        return size
    }

    /// The DFT of (`real`, `imaginary`) in place: X_k = Σ x_j e^{∓2πi jk/n} (− forward, + inverse,
    /// the inverse also divides by n). The count must be a power of two.
    // Optimised even in debug builds: the PLD accountant's tests compose 10⁵–10⁶-point pmfs.
    @_optimize(speed)
    package static func transform(real: inout [Double], imaginary: inout [Double], inverse: Bool = false) {
        let n = real.count
        precondition(n == imaginary.count && n > 0 && n & (n - 1) == 0, "FFT size must be a power of two")
        guard n > 1 else { return }
        // Twiddles e^{∓2πi k/n} for k < n/2.
        let half = n / 2
        var cosines = [Double](repeating: 0, count: half), sines = [Double](repeating: 0, count: half)
        let sign: Double = inverse ? 1 : -1
        for k in 0..<half {
            let angle = 2 * Double.pi * Double(k) / Double(n)
            cosines[k] = cos(angle)
            sines[k] = sign * sin(angle)
        }
        real.withUnsafeMutableBufferPointer { re in
            imaginary.withUnsafeMutableBufferPointer { im in
                cosines.withUnsafeBufferPointer { wr in
                    sines.withUnsafeBufferPointer { wi in
                        bitReverse(re, im)
                        var length = 2
                        while length <= n {
                            let halfLength = length / 2, stride = n / length
                            var start = 0
                            while start < n {
                                var k = 0
                                for j in start..<(start + halfLength) {
                                    let cr = wr[k], ci = wi[k]
                                    let xr = re[j + halfLength], xi = im[j + halfLength]
                                    let tr = xr * cr - xi * ci, ti = xr * ci + xi * cr
                                    re[j + halfLength] = re[j] - tr
                                    im[j + halfLength] = im[j] - ti
                                    re[j] += tr
                                    im[j] += ti
                                    k += stride
                                }
                                start += length
                            }
                            length <<= 1
                        }
                        if inverse {
                            let scale = 1 / Double(n)
                            for index in 0..<n {
                                re[index] *= scale
                                im[index] *= scale
                            }
                        }
                    }
                }
            }
        }
    }

    @_optimize(speed)
    private static func bitReverse(_ re: UnsafeMutableBufferPointer<Double>, _ im: UnsafeMutableBufferPointer<Double>) {
        let n = re.count
        var j = 0
        for i in 1..<n {
            var bit = n >> 1
            while j & bit != 0 {
                j ^= bit
                bit >>= 1
            }
            j |= bit
            if i < j {
                (re[i], re[j]) = (re[j], re[i])
                (im[i], im[j]) = (im[j], im[i])
            }
        }
    }

    /// The linear convolution c_k = Σ_j a_j b_{k−j} (length a.count + b.count − 1).
    @_optimize(speed)
    package static func convolve(_ a: [Double], _ b: [Double]) -> [Double] {
        guard !a.isEmpty, !b.isEmpty else { return [] }
        let count = a.count + b.count - 1
        let n = size(atLeast: count)
        var ar = a + [Double](repeating: 0, count: n - a.count), ai = [Double](repeating: 0, count: n)
        var br = b + [Double](repeating: 0, count: n - b.count), bi = [Double](repeating: 0, count: n)
        transform(real: &ar, imaginary: &ai)
        transform(real: &br, imaginary: &bi)
        for k in 0..<n {
            let r = ar[k] * br[k] - ai[k] * bi[k], i = ar[k] * bi[k] + ai[k] * br[k]
            (ar[k], ai[k]) = (r, i)
        }
        transform(real: &ar, imaginary: &ai, inverse: true)
        return Array(ar[0..<count])
    }

    /// The `times`-fold self-convolution of `a`, cyclically of length `size` (a power of two at least
    /// a.count): entry k holds the mass of every index ≡ k (mod size). The caller picks a window of
    /// `size` indices outside which the true mass is negligible (the wrapped mass lands inside it).
    @_optimize(speed)
    package static func selfConvolve(_ a: [Double], times: Int, size n: Int) -> [Double] {
        precondition(times >= 1 && n >= a.count && n & (n - 1) == 0)
        var re = a + [Double](repeating: 0, count: n - a.count), im = [Double](repeating: 0, count: n)
        transform(real: &re, imaginary: &im)
        let t = Double(times)
        for k in 0..<n {
            // (r e^{iθ})^t in polar form: r ≤ 1 for a pmf, so r^t underflows gracefully to 0.
            let magnitude = (re[k] * re[k] + im[k] * im[k]).squareRoot()
            guard magnitude > 0 else { continue }
            let angle = atan2(im[k], re[k]) * t
            let power = exp(t * log(magnitude))
            (re[k], im[k]) = (power * cos(angle), power * sin(angle))
        }
        transform(real: &re, imaginary: &im, inverse: true)
        return re
    }
}
