/// Shamir secret sharing (Shamir 1979) of 32-byte secrets over the prime field GF(2⁶¹ − 1): a secret
/// is cut into five 7-byte chunks (each below p), every chunk is the constant term of its own random
/// polynomial of degree t − 1, and party i receives the polynomials' values at x = i. Any t shares
/// give the secret by Lagrange interpolation at 0; t − 1 shares are uniformly distributed whatever
/// the secret. The field allows up to 2⁶¹ − 2 parties (GF(256) stops at 255).
package enum Shamir {
    /// p = 2⁶¹ − 1, a Mersenne prime: reduction is a shift and an add.
    package static let prime: UInt64 = (1 << 61) - 1
    package static let secretByteCount = 32
    static let chunkBytes = 7
    package static let chunkCount = (secretByteCount + chunkBytes - 1) / chunkBytes

    /// One party's share of one secret.
    package struct Share: Sendable, Equatable {
        /// The evaluation point: the holder's party index (≥ 1).
        package var x: UInt64
        /// The ``chunkCount`` polynomial values at x, each below ``prime``.
        package var values: [UInt64]

        package init(x: UInt64, values: [UInt64]) {
            (self.x, self.values) = (x, values)
        }
    }

    package enum Failure: Error, Equatable, CustomStringConvertible {
        case badThreshold(threshold: Int, parties: Int)
        case badPoint(UInt64)
        case tooFewShares(have: Int, need: Int)
        case malformedShare
        /// The interpolated value does not decode to a 32-byte secret (a share was wrong).
        case inconsistent

        package var description: String {
            switch self {
            case let .badThreshold(t, n): "threshold \(t) is impossible with \(n) parties (need 1 ≤ t ≤ n)"
            case let .badPoint(x): "party index \(x) cannot hold a share (need 1 ≤ index < 2^61 − 1, no repeats)"
            case let .tooFewShares(have, need): "\(have) shares, \(need) needed to reconstruct"
            case .malformedShare: "a share has the wrong number of values or a value outside the field"
            case .inconsistent: "the shares do not reconstruct a valid secret"
            }
        }
    }

    // MARK: Field arithmetic

    static func reduce(_ x: UInt64) -> UInt64 {
        let folded = (x & prime) &+ (x >> 61)
        return folded >= prime ? folded - prime : folded
    }

    static func add(_ a: UInt64, _ b: UInt64) -> UInt64 { reduce(a &+ b) }
    static func subtract(_ a: UInt64, _ b: UInt64) -> UInt64 { a >= b ? a - b : a &+ prime &- b }

    static func multiply(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (high, low) = a.multipliedFullWidth(by: b)
        // a·b = high·2⁶⁴ + low; 2⁶¹ ≡ 1, so 2⁶⁴ ≡ 8.
        // a, b < 2⁶¹, so high < 2⁵⁸ and 8·high < 2⁶¹.
        return reduce(reduce((low & prime) &+ (low >> 61)) &+ (high << 3))
    }

    /// a^(p−2) = a⁻¹ (Fermat); a ≠ 0.
    static func inverse(_ a: UInt64) -> UInt64 {
        var result: UInt64 = 1, base = a, exponent = prime - 2
        while exponent > 0 {
            if exponent & 1 == 1 { result = multiply(result, base) }
            base = multiply(base, base)
            exponent >>= 1
        }
        return result
    }

    /// A uniform field element from `random` (rejection sampling: no modulo bias).
    static func element(_ random: inout some RandomNumberGenerator) -> UInt64 {
        while true {
            let candidate = random.next() & prime
            if candidate < prime { return candidate }
        }
    }

    // MARK: Sharing

    /// Shares of `secret` (32 bytes) for the parties at `points`, any `threshold` of which reconstruct it.
    package static func split(_ secret: [UInt8], threshold: Int, points: [UInt64],
                              random: inout some RandomNumberGenerator) throws(Failure) -> [Share] {
        precondition(secret.count == secretByteCount, "Shamir shares 32-byte secrets")
        guard threshold >= 1, threshold <= points.count else { throw .badThreshold(threshold: threshold, parties: points.count) }
        if let bad = points.first(where: { $0 == 0 || $0 >= prime }) { throw .badPoint(bad) }
        var seen = Set<UInt64>()
        for point in points where !seen.insert(point).inserted { throw .badPoint(point) }
        var shares = points.map { Share(x: $0, values: []) }
        for chunk in 0..<chunkCount {
            var coefficients = [chunkValue(secret, chunk)]
            for _ in 1..<max(threshold, 1) { coefficients.append(element(&random)) }
            for index in shares.indices {
                // Horner's rule at x.
                var value: UInt64 = 0
                for coefficient in coefficients.reversed() {
                    value = add(multiply(value, shares[index].x), coefficient)
                }
                shares[index].values.append(value)
            }
            for index in coefficients.indices { coefficients[index] = 0 }
        }
        return shares
    }

    /// The secret from any `threshold` of its shares (extra shares are ignored).
    package static func combine(_ shares: [Share], threshold: Int) throws(Failure) -> [UInt8] {
        var reconstructor = Reconstructor(threshold: threshold)
        return try reconstructor.combine(shares)
    }

    /// Rebuilds many secrets shared among the same parties: the Lagrange weights depend only on which
    /// parties' shares are used, so they are computed once per set of points, not once per secret.
    package struct Reconstructor: Sendable {
        package let threshold: Int
        private var weightsByPoints: [[UInt64]: [UInt64]] = [:]

        package init(threshold: Int) { self.threshold = threshold }

        package mutating func combine(_ shares: [Share]) throws(Failure) -> [UInt8] {
            guard threshold >= 1 else { throw .badThreshold(threshold: threshold, parties: shares.count) }
            var used: [Share] = []
            for share in shares where !used.contains(where: { $0.x == share.x }) {
                guard share.values.count == chunkCount, share.values.allSatisfy({ $0 < prime }) else { throw .malformedShare }
                guard share.x != 0, share.x < prime else { throw .badPoint(share.x) }
                used.append(share)
                if used.count == threshold { break }
            }
            guard used.count == threshold else { throw .tooFewShares(have: used.count, need: threshold) }
            let points = used.map(\.x)
            let weights = weightsByPoints[points] ?? Shamir.lagrangeWeightsAtZero(points)
            weightsByPoints[points] = weights
            var secret = [UInt8]()
            secret.reserveCapacity(chunkCount * chunkBytes)
            for chunk in 0..<chunkCount {
                var value: UInt64 = 0
                for (share, weight) in zip(used, weights) { value = add(value, multiply(share.values[chunk], weight)) }
                let width = min(chunkBytes, secretByteCount - chunk * chunkBytes)
                guard value >> (8 * width) == 0 else { throw .inconsistent }
                for byte in 0..<width { secret.append(UInt8(truncatingIfNeeded: value >> (8 * byte))) }
            }
            return secret
        }
    }

    /// ℓ_j(0) = Π_{m≠j} x_m / (x_m − x_j) for distinct non-zero points: one inversion per point.
    static func lagrangeWeightsAtZero(_ points: [UInt64]) -> [UInt64] {
        points.indices.map { j in
            var numerator: UInt64 = 1, denominator: UInt64 = 1
            for m in points.indices where m != j {
                numerator = multiply(numerator, points[m])
                denominator = multiply(denominator, subtract(points[m], points[j]))
            }
            return multiply(numerator, inverse(denominator))
        }
    }

    /// Chunk `chunk` of `secret` as a little-endian integer (< 2⁵⁶ < p).
    static func chunkValue(_ secret: [UInt8], _ chunk: Int) -> UInt64 {
        let start = chunk * chunkBytes, end = min(secret.count, start + chunkBytes)
        var value: UInt64 = 0
        for (offset, byte) in secret[start..<end].enumerated() { value |= UInt64(byte) << (8 * offset) }
        return value
    }
}
