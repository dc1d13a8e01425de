internal import CZMQ
import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A libzmq socket owned by its own I/O thread, with a `Sendable` interface.
///
/// libzmq sockets must be used from one thread. Rather than trusting callers, the socket is created,
/// used and closed on a thread that nothing else can reach; other code talks to it through
/// ``send(_:)`` (queued to the thread, which wakes through an `eventfd` polled next to the socket)
/// and ``messages`` (an async sequence fed by the thread). Misuse is impossible by construction.
///
/// Back-pressure both ways: `send` returns only once libzmq has accepted the message (so a full
/// high-water mark suspends the caller), and the thread stops reading from the socket while
/// ``Configuration/inboxCapacity`` received messages wait unconsumed.
package final class ZMQChannel: Sendable {
    package struct Configuration: Sendable {
        package var kind: ZMQSocket.Kind
        package var options: ZMQSocketOptions
        package var bind: [String]
        package var connect: [String]
        /// SUB only: topic prefixes to subscribe to.
        package var subscriptions: [[UInt8]]
        /// Received messages that may wait unconsumed before the thread stops reading.
        package var inboxCapacity: Int

        package init(kind: ZMQSocket.Kind, options: ZMQSocketOptions = .init(), bind: [String] = [],
                     connect: [String] = [], subscriptions: [[UInt8]] = [],
                     inboxCapacity: Int = 1024) {
            self.kind = kind
            self.options = options
            self.bind = bind
            self.connect = connect
            self.subscriptions = subscriptions
            self.inboxCapacity = inboxCapacity
        }
    }

    /// The bound endpoints, with the ports chosen for `tcp://host:*` binds.
    package let boundEndpoints: [String]
    /// Messages received, in order. One consumer at a time.
    package let messages: Inbox
    /// Connection events from libzmq's socket monitor (the newest 256 are kept until read).
    package let events: Events

    private let shared: Shared

    /// Creates the socket on a new thread, binds and connects it, and returns once that is done.
    ///
    /// - Throws: ``ZMQError`` from creating, configuring, binding (e.g. `addressInUse`) or connecting.
    package init(context: ZMQContext, configuration: Configuration) throws(ZMQError) {
        let shared = try Shared(capacity: configuration.inboxCapacity)
        let ready = Mutex<Result<[String], ZMQError>?>(nil)
        let readySignal = DispatchSemaphore(value: 0)
        let thread = Thread {
            IOThread.run(context: context, configuration: configuration, shared: shared) { result in
                ready.withLock { $0 = result }
                readySignal.signal()
            }
        }
        thread.name = "zmq-\(configuration.kind)"
        thread.start()
        readySignal.wait()
        switch ready.withLock({ $0 }) {
        case .success(let endpoints):
            boundEndpoints = endpoints
        case .failure(let error):
            shared.finished.wait()
            throw error
        case nil:
            preconditionFailure("I/O thread reported nothing")
        }
        self.shared = shared
        self.messages = Inbox(shared: shared)
        self.events = Events(shared: shared)
    }

    deinit { close() }

    /// Queues `frames` as one message and returns once libzmq accepted it.
    ///
    /// - Throws: ``ZMQError`` with `closed` after ``close()``, `hostUnreachable` from a ROUTER with
    ///   `routerMandatory` for an unknown peer, `wouldBlock` when the task was cancelled while waiting.
    package func send(_ frames: [OutboundFrame]) async throws(ZMQError) {
        let id = shared.nextID.add(1, ordering: .relaxed).newValue
        let result: Result<Void, ZMQError> = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let accepted = shared.outbox.withLock { outbox in
                    guard !outbox.closed else { return false }
                    outbox.pending.append(Pending(id: id, frames: frames, continuation: continuation))
                    return true
                }
                if accepted, Task.isCancelled {
                    // Cancelled before the message was queued: `onCancel` has run already and found
                    // nothing to take back, so take it back here (else the send would wait forever for a
                    // peer, e.g. after the aggregator refused this key).
                    takeBack(id)
                } else if accepted {
                    shared.wake.signal()
                } else {
                    continuation.resume(returning: .failure(ZMQError(code: .closed, operation: "send", detail: "channel closed")))
                }
            }
        } onCancel: {
            takeBack(id)
        }
        try result.get()
    }

    /// Fails send `id` with `wouldBlock` if libzmq has not taken it yet.
    private func takeBack(_ id: Int) {
        let cancelled = shared.outbox.withLock { outbox -> Pending? in
            guard let index = outbox.pending.firstIndex(where: { $0.id == id }) else { return nil }
            return outbox.pending.remove(at: index)
        }
        cancelled?.continuation.resume(returning: .failure(
            ZMQError(code: .wouldBlock, operation: "send", detail: "cancelled before libzmq accepted the message")))
    }

    /// Sends plain byte frames.
    package func send(_ frames: [[UInt8]]) async throws(ZMQError) {
        try await send(frames.map { .bytes($0) })
    }

    /// Closes every connection accepted on the bound endpoints and listens again on the same addresses
    /// (``ZMQSocket/unbind(_:)`` then bind), on the I/O thread. What those connections had queued, in
    /// either direction, is discarded, including a multipart message still arriving; connecting peers
    /// reconnect by themselves. The memory guard's remedy (``MemoryGuard``): libzmq buffers a multipart
    /// message until its last frame, outside every high-water mark. Returns once it was done.
    package func dropConnections() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let queued = shared.outbox.withLock { outbox in
                guard !outbox.closed else { return false }
                outbox.resets.append(continuation)
                return true
            }
            if queued { shared.wake.signal() } else { continuation.resume() }
        }
    }

    /// Stops the I/O thread and closes the socket. Pending sends fail with `closed`; the message
    /// sequence ends. Safe to call more than once and from any thread; returns after the thread exited.
    package func close() {
        let wasStopped = shared.stop.exchange(true, ordering: .acquiringAndReleasing)
        if !wasStopped { shared.wake.signal() }
        shared.finished.wait()
        shared.finished.signal()  // let later callers of close() through as well
    }

    /// Waits for the next message for at most `timeout`; `nil` when none arrived in time.
    /// No message is lost to the timeout: one that arrives as it fires is returned.
    package func receive(timeout: Duration) async throws -> ZMQMessage? {
        try await withThrowingTaskGroup(of: ZMQMessage?.self) { group in
            group.addTask { try await self.shared.inbox.next() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            var found: ZMQMessage?
            if let first = try await group.next() { found = first }
            group.cancelAll()
            while let rest = try await group.next() { if found == nil { found = rest } }
            return found
        }
    }

    // MARK: - Inbox

    /// The socket's connection events, in order; the newest 256 are kept until read. Like ``Inbox``,
    /// it survives a cancelled consumer.
    package struct Events: AsyncSequence, Sendable {
        package typealias Element = ZMQSocketEvent
        fileprivate let shared: Shared

        package struct AsyncIterator: AsyncIteratorProtocol {
            fileprivate let shared: Shared
            package mutating func next() async -> ZMQSocketEvent? { try? await shared.events.next() }
        }

        package func makeAsyncIterator() -> AsyncIterator { AsyncIterator(shared: shared) }
    }

    /// The received messages of a channel, in order. Consuming one frees a slot of the inbox's capacity.
    ///
    /// Unlike an `AsyncStream`, cancelling a waiting consumer does not end the sequence: the
    /// cancelled `next()` returns `nil` and a later consumer continues where it left off. The
    /// sequence ends (after the queued messages) when the channel closes, or throws the error
    /// that stopped the socket.
    package struct Inbox: AsyncSequence, Sendable {
        package typealias Element = ZMQMessage
        fileprivate let shared: Shared

        package struct AsyncIterator: AsyncIteratorProtocol {
            fileprivate let shared: Shared
            package mutating func next() async throws -> ZMQMessage? { try await shared.inbox.next() }
        }

        package func makeAsyncIterator() -> AsyncIterator { AsyncIterator(shared: shared) }
    }

    // MARK: - State shared with the I/O thread

    fileprivate struct Pending {
        let id: Int
        let frames: [OutboundFrame]
        let continuation: CheckedContinuation<Result<Void, ZMQError>, Never>
    }

    fileprivate struct Outbox {
        var pending: [Pending] = []
        /// ``dropConnections()`` calls waiting for the I/O thread.
        var resets: [CheckedContinuation<Void, Never>] = []
        var closed = false
    }

    fileprivate final class Shared: Sendable {
        let outbox = Mutex(Outbox())
        let wake: WakeSignal
        let stop = Atomic<Bool>(false)
        let nextID = Atomic<Int>(0)
        let finished = DispatchSemaphore(value: 0)
        let inbox: ChannelBuffer<ZMQMessage>
        let events = ChannelBuffer<ZMQSocketEvent>(capacity: .max)

        init(capacity: Int) throws(ZMQError) {
            wake = try WakeSignal()
            inbox = ChannelBuffer(capacity: max(capacity, 1), wake: wake)
        }
    }

    // MARK: - The thread

    private enum IOThread {
        static func run(context: ZMQContext, configuration: Configuration, shared: Shared,
                        ready: (Result<[String], ZMQError>) -> Void) {
            defer {
                let (abandoned, resets) = shared.outbox.withLock { outbox in
                    outbox.closed = true
                    defer { (outbox.pending, outbox.resets) = ([], []) }
                    return (outbox.pending, outbox.resets)
                }
                for reset in resets { reset.resume() }
                for item in abandoned {
                    item.continuation.resume(returning: .failure(ZMQError(code: .closed, operation: "send", detail: "channel closed")))
                }
                shared.events.finish(.success(()))
                shared.finished.signal()
            }
            var reportedReady = false
            let trace = ProcessInfo.processInfo.environment["FEDDRIFT_TRACE_CHANNELS"] != nil
            let name = "\(configuration.kind) bind=\(configuration.bind) connect=\(configuration.connect)"
            if trace { FileHandle.standardError.write(Data("channel start \(name)\n".utf8)) }
            defer { if trace { FileHandle.standardError.write(Data("channel stop \(name)\n".utf8)) } }
            do throws(ZMQError) {
                let endpoint = try Endpoint(context: context, configuration: configuration)
                ready(.success(endpoint.bound))
                reportedReady = true
                try loop(endpoint, shared: shared)
                shared.inbox.finish(.success(()))
            } catch {
                shared.inbox.finish(.failure(error))
                if !reportedReady { ready(.failure(error)) }
            }
        }

        /// The socket, its event monitor and the endpoints it bound.
        struct Endpoint: ~Copyable {
            let socket: ZMQSocket
            let monitor: ZMQSocket
            let bound: [String]

            init(context: ZMQContext, configuration: Configuration) throws(ZMQError) {
                let socket = try ZMQSocket(configuration.kind, in: context, options: configuration.options)
                let monitor = try socket.monitor(in: context)
                var bound: [String] = []
                for endpoint in configuration.bind {
                    try socket.bind(endpoint)
                    bound.append(try socket.lastEndpoint())
                }
                for endpoint in configuration.connect { try socket.connect(endpoint) }
                for prefix in configuration.subscriptions { try socket.subscribe(prefix) }
                self.bound = bound
                self.socket = socket
                self.monitor = monitor
            }
        }

        private static func loop(_ endpoint: borrowing Endpoint, shared: Shared) throws(ZMQError) {
            var blockedOnSend = false
            let receives = endpoint.socket.kind.canReceive
            var items = [zmq_pollitem_t](repeating: zmq_pollitem_t(), count: 3)
            while !shared.stop.load(ordering: .acquiring) {
                let canRead = receives && shared.inbox.hasRoom
                var socketEvents: Int16 = 0
                if canRead { socketEvents |= Int16(ZMQ_POLLIN) }
                if blockedOnSend { socketEvents |= Int16(ZMQ_POLLOUT) }
                items[0] = zmq_pollitem_t(socket: endpoint.socket.handle, fd: 0, events: socketEvents, revents: 0)
                items[1] = zmq_pollitem_t(socket: nil, fd: shared.wake.fd, events: Int16(ZMQ_POLLIN), revents: 0)
                items[2] = zmq_pollitem_t(socket: endpoint.monitor.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
                try zmqCall("zmq_poll") { zmq_poll(&items, 3, 250) }
                if items[1].revents != 0 { shared.wake.drain() }

                let resets = shared.outbox.withLock { outbox in
                    defer { outbox.resets = [] }
                    return outbox.resets
                }
                if !resets.isEmpty {
                    defer { for reset in resets { reset.resume() } }
                    for address in endpoint.bound {
                        try endpoint.socket.unbind(address)
                        // libzmq closes the listener on its own I/O thread: the address may be busy a moment.
                        var attempt = 0
                        while true {
                            do throws(ZMQError) {
                                try endpoint.socket.bind(address)
                                break
                            } catch where error.code == .addressInUse && attempt < 200 {
                                attempt += 1
                                usleep(10_000)
                            }
                        }
                    }
                }

                // Sends: in order; a full queue leaves the rest waiting for POLLOUT. A ROUTER's full
                // queue is one peer's (with ROUTER_MANDATORY): that message fails, so that a peer that
                // never reads cannot hold up the replies to every other peer.
                blockedOnSend = false
                while let item = shared.outbox.withLock({ $0.pending.first }) {
                    let result: Result<Void, ZMQError>
                    do {
                        if try endpoint.socket.send(item.frames, blocking: false) {
                            result = .success(())
                        } else if endpoint.socket.kind == .router {
                            result = .failure(ZMQError(code: .wouldBlock, operation: "send",
                                                       detail: "the peer's queue is full (it does not read)"))
                        } else {
                            blockedOnSend = true
                            break
                        }
                    } catch {
                        result = .failure(error)
                    }
                    let removed = shared.outbox.withLock { outbox -> Bool in
                        guard outbox.pending.first?.id == item.id else { return false }  // cancelled meanwhile
                        outbox.pending.removeFirst()
                        return true
                    }
                    if removed { item.continuation.resume(returning: result) }
                }

                // Receives, while the consumer keeps up.
                while receives && shared.inbox.hasRoom, let message = try endpoint.socket.receive(blocking: false) {
                    shared.inbox.push(message)
                }

                while let event = try ZMQSocketEvent.receive(from: endpoint.monitor) {
                    shared.events.push(event, dropOldestBeyond: 256)
                }
            }
        }
    }
}

/// A self-pipe: any thread signals by writing a byte, the I/O thread polls the read end next to its
/// socket. Non-blocking on both ends, so a full pipe (already signalled) never blocks a sender.
final class WakeSignal: Sendable {
    let fd: Int32
    private let writeFD: Int32

    init() throws(ZMQError) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw ZMQError(code: .init(rawValue: errno), operation: "pipe") }
        for end in fds {
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        fd = fds[0]
        writeFD = fds[1]
    }

    deinit {
        Glibc.close(fd)
        Glibc.close(writeFD)
    }

    func signal() {
        var byte: UInt8 = 1
        _ = Glibc.write(writeFD, &byte, 1)
    }

    func drain() {
        var buffer = [UInt8](repeating: 0, count: 256)
        while Glibc.read(fd, &buffer, buffer.count) > 0 {}
    }
}
