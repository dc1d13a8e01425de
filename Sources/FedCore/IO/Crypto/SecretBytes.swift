internal import CSodium
import Synchronization

/// Secret key material in one `sodium_malloc` allocation: guard pages around it, locked in RAM (no
/// swap, no core dump), read-only after initialization, wiped when dropped. It cannot be copied,
/// encoded or printed: the bytes are reachable only through ``withUnsafeBytes(_:)``.
package struct SecretBytes: ~Copyable, @unchecked Sendable {
    // @unchecked: the allocation is read-only (sodium_mprotect_readonly) after init; concurrent
    // reads through withUnsafeBytes are safe.
    package let count: Int
    private let bytes: UnsafeMutableRawPointer

    /// Allocates `count` secret bytes and lets `fill` write them (e.g. from the CSPRNG or a decoder).
    package init<E: Error>(count: Int, fill: (UnsafeMutableRawBufferPointer) throws(E) -> Void) throws(E) {
        precondition(Sodium.isReady, "libsodium failed to initialize")
        precondition(count > 0, "empty secret")
        // "sodium_malloc() returns a pointer from which exactly size contiguous bytes can be accessed
        // ... The memory is also locked" (libsodium: secure memory). nil only when out of memory.
        guard let bytes = sodium_malloc(count) else { preconditionFailure("sodium_malloc: out of memory") }
        do {
            try fill(UnsafeMutableRawBufferPointer(start: bytes, count: count))
        } catch {
            sodium_free(bytes)  // zeroes before freeing
            throw error
        }
        _ = sodium_mprotect_readonly(bytes)
        self.bytes = bytes
        self.count = count
    }

    /// `count` bytes from the CSPRNG.
    package static func random(count: Int) -> SecretBytes {
        SecretBytes(count: count) { randombytes_buf($0.bytePointer, $0.count) }
    }

    /// Moves `source` into secret memory and wipes `source`, also when the length is wrong.
    package init(wiping source: inout [UInt8], expectedCount: Int) throws(CryptoError) {
        defer { Sodium.wipe(&source) }
        guard source.count == expectedCount else {
            throw .invalidKeyLength(expected: expectedCount, found: source.count)
        }
        // Read the caller's buffer in place: a copy (`let x = source`) would make the wipe below
        // copy-on-write a fresh buffer and leave the original, secret bytes and all, to be freed unwiped.
        self.init(count: expectedCount) { out in source.withUnsafeBytes { out.copyMemory(from: $0) } }
    }

    deinit {
        _ = sodium_mprotect_readwrite(bytes)
        sodium_memzero(bytes, count)
        SecretMemoryProbe.observer?.record(UnsafeRawBufferPointer(start: bytes, count: count))
        sodium_free(bytes)
    }

    /// Lends the secret to a libsodium or libzmq call. The pointer must not escape `body`.
    func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: bytes, count: count))
    }
}

/// Lets a test observe secret memory at the moment it is released, after the wipe and before the
/// allocation is returned. Scoped to a task with `$observer.withValue`, so parallel tests don't mix.
package enum SecretMemoryProbe {
    @TaskLocal package static var observer: Observer?

    package final class Observer: Sendable {
        private let released = Mutex<[(count: Int, allZero: Bool)]>([])
        package init() {}
        func record(_ memory: UnsafeRawBufferPointer) {
            let allZero = memory.allSatisfy { $0 == 0 }
            released.withLock { $0.append((memory.count, allZero)) }
        }
        /// Sizes of the released secrets and whether each was all zeros when released.
        package var releases: [(count: Int, allZero: Bool)] { released.withLock { $0 } }
    }
}
