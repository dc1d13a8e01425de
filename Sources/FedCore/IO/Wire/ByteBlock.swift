/// An immutable, heap-allocated run of bytes that can be handed to another thread or to libzmq
/// without copying.
///
/// Large payloads (sealed model updates, model blobs) are written once into a block and then only
/// read: the transport sends a block zero-copy (libzmq keeps a reference until its I/O thread has
/// written the bytes), so a 4 MiB update is never copied between sealing and the kernel.
package final class ByteBlock: @unchecked Sendable {
    // @unchecked: the bytes are written only inside `init` and never mutated afterwards.
    private let base: UnsafeMutableRawPointer
    /// The number of bytes.
    package let count: Int
    /// Returns adopted storage to its owner (e.g. closes a libzmq message); nil: ours to deallocate.
    private let release: (@Sendable () -> Void)?

    /// Allocates `count` bytes (64-byte aligned) and lets `fill` write every one of them.
    package init<E: Error>(
        count: Int, fill: (UnsafeMutableRawBufferPointer) throws(E) -> Void
    ) throws(E) {
        precondition(count >= 0, "negative ByteBlock size")
        base = .allocate(byteCount: max(count, 1), alignment: 64)
        self.count = count
        release = nil
        do {
            try fill(UnsafeMutableRawBufferPointer(start: base, count: count))
        } catch {
            base.deallocate()
            throw error
        }
    }

    /// Copies `bytes` into a new block.
    package convenience init(copying bytes: some Collection<UInt8>) {
        self.init(count: bytes.count) { buffer in buffer.copyBytes(from: bytes) }
    }

    /// Adopts `count` bytes at `base` that stay valid until `release` runs (when the block is
    /// dropped). The transport uses it to hand out received frames without copying them.
    init(adopting base: UnsafeMutableRawPointer, count: Int, release: @escaping @Sendable () -> Void) {
        self.base = base
        self.count = count
        self.release = release
    }

    deinit {
        if let release { release() } else { base.deallocate() }
    }

    /// Lends the bytes to `body`. The pointer must not escape.
    package func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// The bytes as an array (a copy).
    package var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// The start of the storage, for a zero-copy hand-off whose owner retains `self`.
    var baseAddress: UnsafeMutableRawPointer { base }
}
