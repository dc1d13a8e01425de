internal import CSodium

/// A `RandomNumberGenerator` backed by libsodium's CSPRNG (`randombytes_buf`, i.e. the OS's
/// getrandom). Used wherever randomness protects privacy: user sampling and DP noise.
package struct SodiumRandom: RandomNumberGenerator, Sendable {
    package init() { precondition(Sodium.isReady, "libsodium failed to initialize") }

    package mutating func next() -> UInt64 {
        var value: UInt64 = 0
        withUnsafeMutableBytes(of: &value) { randombytes_buf($0.baseAddress!, 8) }
        return value
    }
}
