/// Vectorised single-precision kernels for the scoring hot path.
package enum FastMath {
    /// eˣ for eight lanes: Cephes' `expf` range reduction and polynomial (relative error ≈ 2e-7 over
    /// the clamped range [-87.3, 88.7]; inputs below underflow to ≈ 1e-38, never to NaN).
    @inline(__always)
    package static func exp(_ x: SIMD8<Float>) -> SIMD8<Float> {
        // Masked replacement compiles to vmaxps/vblendvps; the stdlib's clamped() is an outlined scalar call.
        let clamped = x.replacing(with: -87.3, where: x .< -87.3).replacing(with: 88.7, where: x .> 88.7)
        // Round x·log₂e to the nearest integer by adding and subtracting 1.5·2²³ (|n| ≤ 128), which
        // also leaves n as an integer in the low mantissa bits of `shifted` (SIMD rounded() calls rintf).
        let magic = SIMD8<Float>(repeating: 12_582_912)
        let shifted = clamped * 1.442_695_04 + magic
        let n = shifted - magic
        let r = clamped - n * 0.693_359_375 + n * 2.121_944_4e-4
        var p = SIMD8<Float>(repeating: 1.987_569_1e-4)
        p = p * r + 1.398_199_9e-3
        p = p * r + 8.333_452e-3
        p = p * r + 4.166_579_6e-2
        p = p * r + 1.666_666_5e-1
        p = p * r + 5.000_000_1e-1
        p = p * (r * r) + r + 1
        // The stdlib's lane-wise Float→Int32 conversion is scalar code; the bit pattern is not.
        let integer = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
        return p * unsafeBitCast((integer &+ 127) &<< 23, to: SIMD8<Float>.self)
    }

    /// Lane-wise maximum (vmaxps).
    @inline(__always)
    package static func maximum(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a.replacing(with: b, where: a .< b) }

    /// 1 / (1 + e⁻ˣ) for eight lanes.
    @inline(__always)
    package static func sigmoid(_ x: SIMD8<Float>) -> SIMD8<Float> { 1 / (1 + exp(-x)) }

    /// tanh x = 2σ(2x) − 1 for eight lanes (absolute error ≈ 2e-7).
    @inline(__always)
    package static func tanh(_ x: SIMD8<Float>) -> SIMD8<Float> { 2 * sigmoid(2 * x) - 1 }

    @inline(__always)
    static func load(_ pointer: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(pointer).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always)
    static func store(_ value: SIMD8<Float>, _ pointer: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: SIMD8<Float>.self)
    }

    /// Σ a[i]·b[i] with two eight-lane FMA accumulators.
    @inline(__always)
    package static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        var accumulator0 = SIMD8<Float>(), accumulator1 = SIMD8<Float>()
        var index = 0
        while index + 16 <= count {
            accumulator0 = accumulator0.addingProduct(load(a + index), load(b + index))
            accumulator1 = accumulator1.addingProduct(load(a + index + 8), load(b + index + 8))
            index += 16
        }
        var total = (accumulator0 + accumulator1).sum()
        while index < count {
            total += a[index] * b[index]
            index += 1
        }
        return total
    }

    /// Width of a packed panel: 64 columns, held in eight 8-lane accumulators.
    package static let panelWidth = 64

    /// Packs a row-major `rows × columns` matrix into panels of ``panelWidth`` columns, each panel
    /// stored row after row, so ``accumulate(panels:rows:columns:scaledBy:into:)`` streams memory in
    /// order. The last panel is zero-padded. Returns the packed buffer (caller deallocates).
    package static func packPanels(_ m: UnsafePointer<Float>, rows: Int, columns: Int) -> UnsafeMutablePointer<Float> {
        let panels = (columns + panelWidth - 1) / panelWidth
        let packed = UnsafeMutablePointer<Float>.allocate(capacity: panels * rows * panelWidth)
        packed.initialize(repeating: 0, count: panels * rows * panelWidth)
        for panel in 0..<panels {
            for r in 0..<rows {
                for c in 0..<min(panelWidth, columns - panel * panelWidth) {
                    packed[(panel * rows + r) * panelWidth + c] = m[r * columns + panel * panelWidth + c]
                }
            }
        }
        return packed
    }

    /// out[k] += Σ_r v[r]·M[r][k] for M packed by ``packPanels(_:rows:columns:)``: each output is
    /// loaded and stored once, and the matrix is streamed once, sequentially.
    @inline(__always)
    package static func accumulate(panels m: UnsafePointer<Float>, rows: Int, columns: Int, scaledBy v: UnsafePointer<Float>,
                                   into out: UnsafeMutablePointer<Float>) {
        var panel = m
        var k = 0
        while k + panelWidth <= columns {
            var a0 = load(out + k), a1 = load(out + k + 8), a2 = load(out + k + 16), a3 = load(out + k + 24)
            var a4 = load(out + k + 32), a5 = load(out + k + 40), a6 = load(out + k + 48), a7 = load(out + k + 56)
            for r in 0..<rows {
                let s = SIMD8<Float>(repeating: v[r])
                let row = panel + r * panelWidth
                a0 = a0.addingProduct(s, load(row))
                a1 = a1.addingProduct(s, load(row + 8))
                a2 = a2.addingProduct(s, load(row + 16))
                a3 = a3.addingProduct(s, load(row + 24))
                a4 = a4.addingProduct(s, load(row + 32))
                a5 = a5.addingProduct(s, load(row + 40))
                a6 = a6.addingProduct(s, load(row + 48))
                a7 = a7.addingProduct(s, load(row + 56))
            }
            store(a0, out + k); store(a1, out + k + 8); store(a2, out + k + 16); store(a3, out + k + 24)
            store(a4, out + k + 32); store(a5, out + k + 40); store(a6, out + k + 48); store(a7, out + k + 56)
            panel += rows * panelWidth
            k += panelWidth
        }
        if k < columns {  // the zero-padded last panel, column by column
            for c in 0..<(columns - k) {
                var total = out[k + c]
                for r in 0..<rows { total += v[r] * panel[r * panelWidth + c] }
                out[k + c] = total
            }
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

    /// Σ of `vectors` (all `count` long) in double precision, block by block so that the running
    /// block of sums stays in L1 and each update is read from memory exactly once.
    package static func sum(_ vectors: [[Float]], count: Int) -> [Double] {
        var sum = [Double](repeating: 0, count: count)
        let block = 2048
        sum.withUnsafeMutableBufferPointer { total in
            for start in stride(from: 0, to: count, by: block) {
                let end = min(start + block, count)
                for vector in vectors {
                    precondition(vector.count == count, "every vector must hold count values")
                    vector.withUnsafeBufferPointer { values in
                        for index in start..<end { total[index] += Double(values[index]) }
                    }
                }
            }
        }
        return sum
    }
}
