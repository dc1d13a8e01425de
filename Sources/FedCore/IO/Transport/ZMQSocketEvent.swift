internal import CZMQ

/// A connection event reported by libzmq's socket monitor.
package struct ZMQSocketEvent: Sendable, Equatable, CustomStringConvertible {
    package enum Kind: Sendable, Equatable {
        case connected, connectDelayed, connectRetried, listening, bindFailed, accepted, acceptFailed
        case closed, closeFailed, disconnected, monitorStopped
        case handshakeSucceeded
        /// The peer's security handshake failed because the ZAP handler refused its credentials
        /// (for a CURVE client: its public key is not enrolled). `value` is the ZAP status code.
        case handshakeFailedAuthentication
        case handshakeFailedProtocol
        case handshakeFailedNoDetail
        case other(UInt16)
    }

    package let kind: Kind
    /// Event-specific: a file descriptor, an errno, a reconnect interval or a ZAP status code.
    package let value: UInt32
    package let endpoint: String

    package var description: String { "\(kind) \(endpoint) (\(value))" }

    static func kind(of raw: UInt16) -> Kind {
        switch CInt(raw) {
        case ZMQ_EVENT_CONNECTED: .connected
        case ZMQ_EVENT_CONNECT_DELAYED: .connectDelayed
        case ZMQ_EVENT_CONNECT_RETRIED: .connectRetried
        case ZMQ_EVENT_LISTENING: .listening
        case ZMQ_EVENT_BIND_FAILED: .bindFailed
        case ZMQ_EVENT_ACCEPTED: .accepted
        case ZMQ_EVENT_ACCEPT_FAILED: .acceptFailed
        case ZMQ_EVENT_CLOSED: .closed
        case ZMQ_EVENT_CLOSE_FAILED: .closeFailed
        case ZMQ_EVENT_DISCONNECTED: .disconnected
        case ZMQ_EVENT_MONITOR_STOPPED: .monitorStopped
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: .handshakeSucceeded
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: .handshakeFailedAuthentication
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL: .handshakeFailedProtocol
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: .handshakeFailedNoDetail
        default: .other(raw)
        }
    }

    /// Reads one event from a monitor socket made by ``ZMQSocket/monitor(in:events:)``.
    /// Returns `nil` when none is queued (non-blocking) or the receive timed out.
    package static func receive(from monitor: borrowing ZMQSocket, blocking: Bool = false) throws(ZMQError)
        -> ZMQSocketEvent?
    {
        guard let message = try monitor.receive(blocking: blocking) else { return nil }
        // "The first frame contains an event number (16 bits), and an event value (32 bits) ...
        // The second frame contains a string that specifies the affected endpoint" (zmq_socket_monitor(3)).
        guard message.frames.count >= 2, message.frames[0].count >= 6 else {
            throw ZMQError(code: .invalidArgument, operation: "monitor event", detail: "malformed event frame")
        }
        let head = message.frames[0]
        let raw = UInt16(head[0]) | UInt16(head[1]) << 8
        let value = UInt32(head[2]) | UInt32(head[3]) << 8 | UInt32(head[4]) << 16 | UInt32(head[5]) << 24
        return ZMQSocketEvent(kind: kind(of: raw), value: value,
                              endpoint: String(decoding: message.frames[1], as: UTF8.self))
    }
}
