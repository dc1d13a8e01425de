/// libsodium takes `unsigned char *` that must not be NULL, even for zero-length input; Swift's empty
/// buffers have no base address. These give a valid pointer in every case.
nonisolated(unsafe) private let emptyByte = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)

extension UnsafeRawBufferPointer {
    var bytePointer: UnsafePointer<UInt8> {
        baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) } ?? UnsafePointer(emptyByte)
    }
}

extension UnsafeMutableRawBufferPointer {
    var bytePointer: UnsafeMutablePointer<UInt8> {
        baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) } ?? emptyByte
    }
}

extension Array where Element == UInt8 {
    /// `withUnsafeBytes` with a typed error: the standard library's version only `rethrows`.
    func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        var outcome: Result<R, E>?
        withUnsafeBytes { raw in
            do throws(E) { outcome = .success(try body(raw)) } catch { outcome = .failure(error) }
        }
        guard let outcome else { preconditionFailure("withUnsafeBytes did not call its body") }
        return try outcome.get()
    }
}
