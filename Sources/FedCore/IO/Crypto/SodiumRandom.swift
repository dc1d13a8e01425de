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

/// A buffered CSPRNG for bulk draws (DP noise over hundreds of thousands of coordinates): every 4 KiB
/// block is ChaCha20 output (`randombytes_buf_deterministic`) under a fresh 256-bit seed from the OS's
/// generator, so it is as unpredictable as ``SodiumRandom`` at a fraction of the system calls. The
/// buffer and seed are zeroed after use and when the generator is released. Not `Sendable`: one thread.
package final class SodiumStream: RandomNumberGenerator {
    private static let words = 512
    // A raw buffer: measured, Array storage in a class costs a dynamic exclusivity check and a
    // uniqueness check per draw, a third of the noise sampler's time.
    private let buffer = UnsafeMutablePointer<UInt64>.allocate(capacity: SodiumStream.words)
    @exclusivity(unchecked) private var index = SodiumStream.words

    package init() {
        precondition(Sodium.isReady, "libsodium failed to initialize")
        buffer.initialize(repeating: 0, count: Self.words)
    }

    deinit {
        sodium_memzero(buffer, Self.words * MemoryLayout<UInt64>.size)
        buffer.deallocate()
    }

    package func next() -> UInt64 {
        if index == Self.words { refill() }
        let value = buffer[index]
        buffer[index] = 0
        index += 1
        return value
    }

    private func refill() {
        var seed = [UInt8](repeating: 0, count: Int(randombytes_SEEDBYTES))
        seed.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, $0.count) }
        seed.withUnsafeBytes {
            randombytes_buf_deterministic(buffer, Self.words * MemoryLayout<UInt64>.size, $0.baseAddress!)
        }
        seed.withUnsafeMutableBytes { sodium_memzero($0.baseAddress!, $0.count) }
        index = 0
    }
}

/// BLAKE2b-256 (libsodium's `crypto_generichash`): the privacy ledger's chain links.
package enum Digest {
    package static let byteCount = 32

    package static func blake2b256(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: byteCount)
        bytes.withUnsafeBufferPointer { input in
            _ = crypto_generichash(&out, byteCount, input.baseAddress, UInt64(input.count), nil, 0)
        }
        return out
    }

    /// Lower-case hexadecimal, two digits per byte (hashes, key fingerprints).
    package static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef")
        return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xf)]] })
    }
}
