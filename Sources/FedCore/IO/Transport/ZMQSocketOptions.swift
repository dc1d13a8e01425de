internal import CZMQ

/// CURVE security for one socket. Keys are X25519 (libsodium's box keys, which CURVE uses).
package enum CurveSecurity: Sendable {
    /// A server: clients must know `keys.publicKey`; with a ``ZAPAuthenticator`` in the same context
    /// only allow-listed client keys complete the handshake.
    case server(keys: BoxKeyPair)
    /// A client that authenticates with `keys` and accepts only the server holding `serverKey`.
    case client(keys: BoxKeyPair, serverKey: BoxPublicKey)
}

/// Socket options FedDrift sets, applied when a socket is created (before bind or connect, as libzmq
/// requires for most of them). `nil` keeps libzmq's default.
package struct ZMQSocketOptions: Sendable {
    /// How long unsent messages are kept after close, in ms. 0: dropped, so shutdown never waits.
    package var lingerMilliseconds: Int32 = 0
    /// Messages queued per peer before sends block (or fail when non-blocking).
    package var sendHighWaterMark: Int32?
    package var receiveHighWaterMark: Int32?
    /// The largest inbound message accepted, in bytes; a peer that sends more is disconnected.
    package var maxMessageBytes: Int64?
    /// Blocking receive timeout in ms (-1: wait forever); a timeout surfaces as `nil`.
    package var receiveTimeoutMilliseconds: Int32?
    package var sendTimeoutMilliseconds: Int32?
    /// ZMTP heartbeats: ping interval, how long to wait for the pong, and the TTL asked of the peer.
    package var heartbeat: Heartbeat?
    /// Reconnect back-off: first interval and the cap it doubles up to, in ms.
    package var reconnectIntervalMilliseconds: Int32?
    package var reconnectIntervalMaxMilliseconds: Int32?
    /// The identity this socket presents to a ROUTER peer.
    package var routingID: [UInt8]?
    /// ROUTER: fail with `hostUnreachable` instead of silently dropping a message to an unknown peer.
    package var routerMandatory: Bool = false
    /// Queue messages only to completed connections (no queueing while disconnected).
    package var immediate: Bool = false
    /// PUB: keep only the newest message per subscriber (no backlog).
    package var conflate: Bool = false
    /// Kernel socket buffers, in bytes.
    package var kernelSendBufferBytes: Int32?
    package var kernelReceiveBufferBytes: Int32?
    package var curve: CurveSecurity?
    /// The ZAP domain the server asks the authenticator about.
    package var zapDomain: String?

    package struct Heartbeat: Sendable {
        package var intervalMilliseconds: Int32
        package var timeoutMilliseconds: Int32
        package var ttlMilliseconds: Int32
        package init(intervalMilliseconds: Int32, timeoutMilliseconds: Int32, ttlMilliseconds: Int32) {
            self.intervalMilliseconds = intervalMilliseconds
            self.timeoutMilliseconds = timeoutMilliseconds
            self.ttlMilliseconds = ttlMilliseconds
        }
    }

    package init() {}

    func apply(to handle: UnsafeMutableRawPointer, kind: ZMQSocket.Kind) throws(ZMQError) {
        try Self.setInt(ZMQ_LINGER, lingerMilliseconds, on: handle, name: "ZMQ_LINGER")
        if let sendHighWaterMark { try Self.setInt(ZMQ_SNDHWM, sendHighWaterMark, on: handle, name: "ZMQ_SNDHWM") }
        if let receiveHighWaterMark {
            try Self.setInt(ZMQ_RCVHWM, receiveHighWaterMark, on: handle, name: "ZMQ_RCVHWM")
        }
        if let maxMessageBytes { try Self.set(ZMQ_MAXMSGSIZE, maxMessageBytes, on: handle, name: "ZMQ_MAXMSGSIZE") }
        if let receiveTimeoutMilliseconds {
            try Self.setInt(ZMQ_RCVTIMEO, receiveTimeoutMilliseconds, on: handle, name: "ZMQ_RCVTIMEO")
        }
        if let sendTimeoutMilliseconds {
            try Self.setInt(ZMQ_SNDTIMEO, sendTimeoutMilliseconds, on: handle, name: "ZMQ_SNDTIMEO")
        }
        if let heartbeat {
            try Self.setInt(ZMQ_HEARTBEAT_IVL, heartbeat.intervalMilliseconds, on: handle, name: "ZMQ_HEARTBEAT_IVL")
            try Self.setInt(ZMQ_HEARTBEAT_TIMEOUT, heartbeat.timeoutMilliseconds, on: handle,
                            name: "ZMQ_HEARTBEAT_TIMEOUT")
            try Self.setInt(ZMQ_HEARTBEAT_TTL, heartbeat.ttlMilliseconds, on: handle, name: "ZMQ_HEARTBEAT_TTL")
        }
        if let reconnectIntervalMilliseconds {
            try Self.setInt(ZMQ_RECONNECT_IVL, reconnectIntervalMilliseconds, on: handle, name: "ZMQ_RECONNECT_IVL")
        }
        if let reconnectIntervalMaxMilliseconds {
            try Self.setInt(ZMQ_RECONNECT_IVL_MAX, reconnectIntervalMaxMilliseconds, on: handle,
                            name: "ZMQ_RECONNECT_IVL_MAX")
        }
        if let routingID { try Self.setBytes(ZMQ_ROUTING_ID, routingID, on: handle, name: "ZMQ_ROUTING_ID") }
        if routerMandatory, kind == .router {
            try Self.setInt(ZMQ_ROUTER_MANDATORY, 1, on: handle, name: "ZMQ_ROUTER_MANDATORY")
        }
        if immediate { try Self.setInt(ZMQ_IMMEDIATE, 1, on: handle, name: "ZMQ_IMMEDIATE") }
        if conflate { try Self.setInt(ZMQ_CONFLATE, 1, on: handle, name: "ZMQ_CONFLATE") }
        if let kernelSendBufferBytes {
            try Self.setInt(ZMQ_SNDBUF, kernelSendBufferBytes, on: handle, name: "ZMQ_SNDBUF")
        }
        if let kernelReceiveBufferBytes {
            try Self.setInt(ZMQ_RCVBUF, kernelReceiveBufferBytes, on: handle, name: "ZMQ_RCVBUF")
        }
        if let zapDomain { try Self.setBytes(ZMQ_ZAP_DOMAIN, Array(zapDomain.utf8), on: handle, name: "ZMQ_ZAP_DOMAIN") }
        switch curve {
        case nil:
            break
        case .server(let keys):
            try ZMQContext.requireCurve()
            try Self.setInt(ZMQ_CURVE_SERVER, 1, on: handle, name: "ZMQ_CURVE_SERVER")
            try keys.secretKey.withUnsafeBytes { (secret) throws(ZMQError) in
                try Self.setRaw(ZMQ_CURVE_SECRETKEY, secret, on: handle, name: "ZMQ_CURVE_SECRETKEY")
            }
        case .client(let keys, let serverKey):
            try ZMQContext.requireCurve()
            try Self.setBytes(ZMQ_CURVE_SERVERKEY, serverKey.bytes, on: handle, name: "ZMQ_CURVE_SERVERKEY")
            try Self.setBytes(ZMQ_CURVE_PUBLICKEY, keys.publicKey.bytes, on: handle, name: "ZMQ_CURVE_PUBLICKEY")
            try keys.secretKey.withUnsafeBytes { (secret) throws(ZMQError) in
                try Self.setRaw(ZMQ_CURVE_SECRETKEY, secret, on: handle, name: "ZMQ_CURVE_SECRETKEY")
            }
        }
    }

    static func setInt(_ option: CInt, _ value: Int32, on handle: UnsafeMutableRawPointer, name: String) throws(ZMQError) {
        try set(option, CInt(value), on: handle, name: name)
    }

    static func set<T: BitwiseCopyable>(_ option: CInt, _ value: T, on handle: UnsafeMutableRawPointer, name: String)
        throws(ZMQError)
    {
        var value = value
        try zmqCall("zmq_setsockopt", detail: name) { zmq_setsockopt(handle, option, &value, MemoryLayout<T>.size) }
    }

    static func setBytes(_ option: CInt, _ bytes: [UInt8], on handle: UnsafeMutableRawPointer, name: String)
        throws(ZMQError)
    {
        try bytes.withBytes { (raw) throws(ZMQError) in try setRaw(option, raw, on: handle, name: name) }
    }

    static func setRaw(_ option: CInt, _ raw: UnsafeRawBufferPointer, on handle: UnsafeMutableRawPointer, name: String)
        throws(ZMQError)
    {
        try zmqCall("zmq_setsockopt", detail: name) { zmq_setsockopt(handle, option, raw.baseAddress, raw.count) }
    }
}
