internal import CSodium

/// libsodium's process-wide state and its small utilities.
package enum Sodium {
    /// `sodium_init` runs once, on first use; it is safe to call from any thread.
    static let isReady: Bool = sodium_init() >= 0

    /// The libsodium version string, e.g. `1.0.18`.
    package static var libraryVersion: String { String(cString: sodium_version_string()) }

    /// `count` bytes from the operating system's CSPRNG (`randombytes_buf`).
    package static func randomBytes(_ count: Int) -> [UInt8] {
        precondition(isReady, "libsodium failed to initialize")
        var bytes = [UInt8](repeating: 0, count: count)
        randombytes_buf(&bytes, count)
        return bytes
    }

    /// A uniformly random 64-bit value from the CSPRNG.
    package static func randomUInt64() -> UInt64 {
        precondition(isReady, "libsodium failed to initialize")
        var value: UInt64 = 0
        withUnsafeMutableBytes(of: &value) { randombytes_buf($0.bytePointer, 8) }
        return value
    }

    /// Compares two byte strings in time that depends only on their length (`sodium_memcmp`).
    package static func constantTimeEquals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        return lhs.withUnsafeBytes { l in
            rhs.withUnsafeBytes { r in sodium_memcmp(l.baseAddress, r.baseAddress, l.count) == 0 }
        }
    }

    /// Overwrites the array's bytes with zeros in a way the compiler cannot elide.
    package static func wipe(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { sodium_memzero($0.baseAddress, $0.count) }
    }

    static func wipe(_ buffer: UnsafeMutableRawBufferPointer) {
        sodium_memzero(buffer.baseAddress, buffer.count)
    }
}
