internal import CZMQ

/// A libzmq context: the I/O threads and the `inproc://` namespace shared by every socket made in it.
///
/// Every ``ZMQSocket`` retains its context, so the context is terminated only after the last socket
/// closed and `zmq_ctx_term` never blocks on a socket we forgot.
package final class ZMQContext: @unchecked Sendable {
    // @unchecked: libzmq documents contexts as thread-safe; the handle is never reassigned.
    let handle: UnsafeMutableRawPointer

    /// Creates a context.
    ///
    /// - Parameter ioThreads: libzmq I/O threads. One moves about 1 GB/s; FedDrift's links need one.
    package init(ioThreads: Int = 1) throws(ZMQError) {
        guard let handle = zmq_ctx_new() else { throw .last("zmq_ctx_new") }
        if zmq_ctx_set(handle, ZMQ_IO_THREADS, CInt(ioThreads)) != 0 {
            let error = ZMQError.last("zmq_ctx_set")
            zmq_ctx_term(handle)
            throw error
        }
        self.handle = handle
    }

    deinit {
        // "zmq_ctx_term ... shall block until all sockets open within context have been closed"
        // (zmq_ctx_term(3)); sockets retain the context, so none is open here. EINTR: retry.
        while zmq_ctx_term(handle) == -1 && zmq_errno() == EINTR {}
    }

    /// The libzmq version, e.g. `4.3.4`.
    package static var libraryVersion: String {
        var major: CInt = 0, minor: CInt = 0, patch: CInt = 0
        zmq_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }

    /// Whether libzmq was built with the CURVE security mechanism.
    package static var hasCurve: Bool { zmq_has("curve") != 0 }

    /// Fails with a clear error when libzmq lacks CURVE. Call it at start-up, before any socket exists.
    package static func requireCurve() throws(ZMQError) {
        guard hasCurve else {
            throw ZMQError(code: .notSupported, operation: "zmq_has(\"curve\")",
                           detail: "libzmq \(libraryVersion) has no CURVE support")
        }
    }
}
