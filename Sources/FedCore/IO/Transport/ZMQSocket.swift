internal import CZMQ
import Foundation

/// One frame to send: a small array (copied into libzmq) or a ``ByteBlock`` (sent zero-copy).
package enum OutboundFrame: Sendable {
    case bytes([UInt8])
    case block(ByteBlock)

    package var count: Int {
        switch self {
        case .bytes(let bytes): bytes.count
        case .block(let block): block.count
        }
    }
}

/// A received multipart message.
///
/// Each frame is a ``ByteBlock`` that still holds libzmq's own buffer: a 4 MiB update is never
/// copied between the kernel and the code that opens it. ``frames`` copies into arrays, for the
/// small frames of control messages.
package struct ZMQMessage: Sendable, Equatable {
    /// The frames in order. On a ROUTER socket the first frame is the sender's routing id.
    package var parts: [ByteBlock]
    /// The user id the ZAP handler assigned to the sending peer, when the link is authenticated
    /// (CURVE with a ``ZAPAuthenticator``). It cannot be forged by the peer.
    package var userID: String?

    package init(parts: [ByteBlock], userID: String? = nil) {
        self.parts = parts
        self.userID = userID
    }

    package init(frames: [[UInt8]], userID: String? = nil) {
        self.init(parts: frames.map { ByteBlock(copying: $0) }, userID: userID)
    }

    /// The frames copied into arrays.
    package var frames: [[UInt8]] { parts.map(\.bytes) }

    package static func == (lhs: ZMQMessage, rhs: ZMQMessage) -> Bool {
        lhs.userID == rhs.userID && lhs.frames == rhs.frames
    }
}

/// A heap-allocated `zmq_msg_t`, so a received frame can outlive the receive call.
private struct ReceivedFrame: @unchecked Sendable {
    // @unchecked: the message is owned by exactly one ByteBlock, which closes it once.
    let message: UnsafeMutablePointer<zmq_msg_t>
}

/// A libzmq socket. libzmq sockets are not thread-safe, so this type is neither copyable nor
/// `Sendable`: create it, use it and drop it on one thread. Dropping it closes the socket.
///
/// Most of FedDrift uses ``ZMQChannel``, which owns a socket on a dedicated I/O thread and hands
/// out a `Sendable` interface; use `ZMQSocket` directly only on a thread you own.
package struct ZMQSocket: ~Copyable {
    package enum Kind: Sendable {
        case pair, pub, sub, req, rep, dealer, router, pull, push

        var rawValue: CInt {
            switch self {
            case .pair: ZMQ_PAIR
            case .pub: ZMQ_PUB
            case .sub: ZMQ_SUB
            case .req: ZMQ_REQ
            case .rep: ZMQ_REP
            case .dealer: ZMQ_DEALER
            case .router: ZMQ_ROUTER
            case .pull: ZMQ_PULL
            case .push: ZMQ_PUSH
            }
        }

        /// Whether the socket type can receive (PUB and PUSH only send).
        var canReceive: Bool { self != .pub && self != .push }
    }

    private let context: ZMQContext  // retained, so the context outlives every socket
    let handle: UnsafeMutableRawPointer
    package let kind: Kind

    package init(_ kind: Kind, in context: ZMQContext, options: ZMQSocketOptions = .init()) throws(ZMQError) {
        guard let handle = zmq_socket(context.handle, kind.rawValue) else { throw .last("zmq_socket") }
        do {
            try options.apply(to: handle, kind: kind)
        } catch {
            zmq_close(handle)  // self is not initialized, so deinit won't run
            throw error
        }
        self.context = context
        self.handle = handle
        self.kind = kind
    }

    deinit { zmq_close(handle) }

    /// Binds to `endpoint`, e.g. `tcp://127.0.0.1:7700` or `tcp://127.0.0.1:*` for any free port.
    package func bind(_ endpoint: String) throws(ZMQError) {
        try zmqCall("zmq_bind", detail: endpoint) { zmq_bind(handle, endpoint) }
    }

    /// Stops listening on `endpoint` (as ``lastEndpoint()`` reported it) and closes every connection
    /// accepted through it, discarding what they had queued, complete or not (zmq_unbind(3)).
    package func unbind(_ endpoint: String) throws(ZMQError) {
        try zmqCall("zmq_unbind", detail: endpoint) { zmq_unbind(handle, endpoint) }
    }

    /// Connects to `endpoint`. libzmq connects in the background and reconnects by itself.
    package func connect(_ endpoint: String) throws(ZMQError) {
        try zmqCall("zmq_connect", detail: endpoint) { zmq_connect(handle, endpoint) }
    }

    /// The endpoint of the last bind, with the port a wildcard bind was given.
    package func lastEndpoint() throws(ZMQError) -> String {
        var buffer = [CChar](repeating: 0, count: 512)
        var size = buffer.count
        try zmqCall("zmq_getsockopt(ZMQ_LAST_ENDPOINT)") { zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buffer, &size) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Sends all frames as one atomic multipart message.
    ///
    /// - Parameter blocking: when `false`, a full queue (high-water mark reached) returns `false`
    ///   instead of waiting; nothing was sent then. libzmq checks the limit only at the first frame,
    ///   so a message is never half sent.
    /// - Returns: `true` when libzmq accepted the message.
    @discardableResult
    package func send(_ frames: [OutboundFrame], blocking: Bool = true) throws(ZMQError) -> Bool {
        precondition(!frames.isEmpty, "a message needs at least one frame")
        for (index, frame) in frames.enumerated() {
            var flags: CInt = index < frames.count - 1 ? ZMQ_SNDMORE : 0
            if !blocking { flags |= ZMQ_DONTWAIT }
            do {
                try sendFrame(frame, flags: flags)
            } catch where error.code == .wouldBlock && index == 0 {
                return false
            }
        }
        return true
    }

    /// Sends one message of plain byte arrays.
    package func send(_ frames: [[UInt8]]) throws(ZMQError) {
        try send(frames.map { .bytes($0) })
    }

    private func sendFrame(_ frame: OutboundFrame, flags: CInt) throws(ZMQError) {
        var message = zmq_msg_t()
        switch frame {
        case .bytes(let bytes):
            try zmqCall("zmq_msg_init_size") { zmq_msg_init_size(&message, bytes.count) }
            if !bytes.isEmpty {
                bytes.withUnsafeBytes { source in
                    zmq_msg_data(&message).copyMemory(from: source.baseAddress!, byteCount: source.count)
                }
            }
        case .block(let block):
            // "The function pointed to by ffn is called once the data buffer is no longer required by
            // ØMQ, with the data and hint arguments supplied to zmq_msg_init_data()" (zmq_msg_init_data(3)).
            // The hint is a +1 reference to the block, released there, possibly on an I/O thread.
            let hint = Unmanaged.passRetained(block).toOpaque()
            let result = zmq_msg_init_data(&message, block.baseAddress, block.count, { _, hint in
                if let hint { Unmanaged<ByteBlock>.fromOpaque(hint).release() }
            }, hint)
            if result == -1 {
                Unmanaged<ByteBlock>.fromOpaque(hint).release()
                throw .last("zmq_msg_init_data")
            }
        }
        do {
            try zmqCall("zmq_msg_send") { zmq_msg_send(&message, handle, flags) }
        } catch {
            zmq_msg_close(&message)  // on failure the message still belongs to us
            throw error
        }
    }

    /// Receives one whole multipart message.
    ///
    /// - Parameter blocking: when `false`, returns `nil` at once if nothing is queued.
    /// - Returns: the message, or `nil` when the receive timeout elapsed (or nothing was queued).
    package func receive(blocking: Bool = true) throws(ZMQError) -> ZMQMessage? {
        var parts: [ByteBlock] = []
        var userID: String?
        var more = true
        while more {
            let frame = ReceivedFrame(message: .allocate(capacity: 1))
            zmq_msg_init(frame.message)
            let flags: CInt = (blocking || !parts.isEmpty) ? 0 : ZMQ_DONTWAIT
            do {
                try zmqCall("zmq_msg_recv") { zmq_msg_recv(frame.message, handle, flags) }
            } catch {
                zmq_msg_close(frame.message)
                frame.message.deallocate()
                if error.code == .wouldBlock && parts.isEmpty { return nil }
                throw error
            }
            // ROUTER prepends a routing-id frame that carries no metadata: read it from the peer's frames.
            if userID == nil, let value = zmq_msg_gets(frame.message, "User-Id") {
                userID = String(cString: value)
            }
            more = zmq_msg_more(frame.message) != 0
            // "zmq_msg_data() ... shall return a pointer to the message content" (zmq_msg_data(3)); it
            // stays valid until zmq_msg_close, which the block's release runs.
            let size = zmq_msg_size(frame.message)
            let data = zmq_msg_data(frame.message) ?? UnsafeMutableRawPointer(frame.message)
            parts.append(ByteBlock(adopting: data, count: size) {
                zmq_msg_close(frame.message)
                frame.message.deallocate()
            })
        }
        return ZMQMessage(parts: parts, userID: userID)
    }

    /// Subscribes a SUB socket to messages whose first frame starts with `prefix` (empty: all).
    package func subscribe(_ prefix: [UInt8]) throws(ZMQError) {
        try ZMQSocketOptions.setBytes(ZMQ_SUBSCRIBE, prefix, on: handle, name: "ZMQ_SUBSCRIBE")
    }

    /// Waits until a message can be received, for at most `timeoutMilliseconds` (-1: forever).
    package func waitUntilReadable(timeoutMilliseconds: Int) throws(ZMQError) -> Bool {
        var item = zmq_pollitem_t(socket: handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        let ready = try zmqCall("zmq_poll") { zmq_poll(&item, 1, timeoutMilliseconds) }
        return ready > 0
    }

    /// Starts libzmq's event monitor for this socket and returns the PAIR socket that receives the
    /// events. Read them with ``ZMQSocketEvent/receive(from:blocking:)``.
    package func monitor(in context: ZMQContext, events: CInt = ZMQ_EVENT_ALL) throws(ZMQError) -> ZMQSocket {
        let endpoint = "inproc://feddrift-monitor-\(UUID().uuidString)"
        try zmqCall("zmq_socket_monitor") { zmq_socket_monitor(handle, endpoint, events) }
        let pair = try ZMQSocket(.pair, in: context)
        try pair.connect(endpoint)
        return pair
    }
}
