internal import CZMQ

#if canImport(Glibc)
internal import Glibc
#endif

/// A libzmq failure, carrying the `zmq_errno()` code and the call that failed.
///
/// Callers match on ``code``: `catch where error.code == .wouldBlock { ... }`. The description names
/// the cause in words and, where an operator can act on it, the fix.
package struct ZMQError: Error, CustomStringConvertible, Sendable {
    package struct Code: RawRepresentable, Hashable, Sendable {
        package let rawValue: CInt
        package init(rawValue: CInt) { self.rawValue = rawValue }
        /// A timeout elapsed, or a non-blocking call found nothing to do.
        package static let wouldBlock = Code(rawValue: EAGAIN)
        /// The context is shutting down.
        package static let contextTerminated = Code(rawValue: ETERM)
        /// The address is already bound by another socket or process.
        package static let addressInUse = Code(rawValue: EADDRINUSE)
        /// A message exceeds the size limit agreed for the link (`ZMQ_MAXMSGSIZE` of the peer).
        package static let messageTooLarge = Code(rawValue: EMSGSIZE)
        /// A ROUTER socket was asked to send to a peer it does not know (`ZMQ_ROUTER_MANDATORY`).
        package static let hostUnreachable = Code(rawValue: EHOSTUNREACH)
        /// The endpoint string is not valid for its transport.
        package static let invalidArgument = Code(rawValue: EINVAL)
        /// The requested security mechanism is not compiled into libzmq.
        package static let notSupported = Code(rawValue: ENOTSUP)
        /// The channel was closed by its owner.
        package static let closed = Code(rawValue: EPIPE)
        static let interrupted = Code(rawValue: EINTR)
        static let notASocket = Code(rawValue: ENOTSOCK)
    }

    package let code: Code
    package let operation: String
    package let detail: String?

    package init(code: Code, operation: String, detail: String? = nil) {
        self.code = code
        self.operation = operation
        self.detail = detail
    }

    package var description: String {
        var text = "\(operation): \(String(cString: zmq_strerror(code.rawValue)))"
        if let detail { text += " (\(detail))" }
        if let fix = Self.fixes[code] { text += ". \(fix)" }
        return text
    }

    private static let fixes: [Code: String] = [
        .addressInUse: "Another process already listens there: stop it or choose another port in the configuration",
        .messageTooLarge: "The peer refuses messages this large: raise its max_message_bytes or send less",
        .notSupported: "This libzmq was built without that feature: install Debian's libzmq5 (built with libsodium)",
        .invalidArgument: "Check the endpoint, e.g. tcp://127.0.0.1:7700",
    ]

    /// The error of the last failed libzmq call. Call it before any other `zmq_*` function.
    static func last(_ operation: String, detail: String? = nil) -> ZMQError {
        ZMQError(code: Code(rawValue: zmq_errno()), operation: operation, detail: detail)
    }
}

/// Runs a libzmq call that fails with `-1`. Retries on `EINTR`; traps on codes that mean a FedCore bug.
@discardableResult
func zmqCall(_ operation: String, detail: String? = nil, _ body: () -> CInt) throws(ZMQError) -> CInt {
    while true {
        let result = body()
        guard result == -1 else { return result }
        let error = ZMQError.last(operation, detail: detail)
        switch error.code {
        case .interrupted: continue
        case .notASocket: preconditionFailure("\(error): invalid socket handle")
        default: throw error
        }
    }
}
