import Synchronization

/// A queue between a producer thread and one async consumer at a time.
///
/// Unlike `AsyncStream`, a consumer cancelled while waiting gets `nil` and the buffer lives on, so
/// "wait for the next message for at most 2 s" does not destroy the queue. `finish` ends it after
/// the queued elements, or with an error.
final class ChannelBuffer<Element: Sendable>: Sendable {
    private struct State {
        /// Elements before `head` were taken: their slots are nil, so that nothing keeps them (and, for
        /// received messages, libzmq's buffers under them) alive. Until this was so, up to 1,024 consumed
        /// messages per channel stayed referenced: the soak's agents grew 0.025 MiB a round for 400 rounds
        /// (heaptrack: all of it libzmq message buffers) and the aggregator held agents' updates.
        var queue: [Element?] = []
        var head = 0

        /// Takes the element at `head`, if any, leaving its slot empty; compacts the taken prefix.
        mutating func take() -> Element? {
            guard head < queue.count else { return nil }
            let element = queue[head]
            queue[head] = nil
            head += 1
            if head == queue.count {
                queue.removeAll(keepingCapacity: queue.count <= 1024)
                head = 0
            } else if head > 1024 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            return element
        }
        var waiter: (id: Int, continuation: CheckedContinuation<Result<Element?, any Error>, Never>)?
        var end: Result<Void, any Error>?
        var nextWaiterID = 0
    }

    private let state = Mutex(State())
    private let unconsumed = Atomic<Int>(0)
    private let wake: WakeSignal?
    let capacity: Int

    /// - Parameters:
    ///   - capacity: unconsumed elements before ``hasRoom`` turns false.
    ///   - wake: signalled when a consumer frees room after the buffer was full.
    init(capacity: Int, wake: WakeSignal? = nil) {
        self.wake = wake
        self.capacity = capacity
    }

    /// Whether the I/O thread may read more: fewer than `capacity` messages wait unconsumed.
    var hasRoom: Bool { unconsumed.load(ordering: .relaxed) < capacity }

    private func consumedQueued() {
        let before = unconsumed.subtract(1, ordering: .relaxed).oldValue
        if before >= capacity { wake?.signal() }  // the I/O thread may have stopped reading: wake it
    }

    /// Appends `message`; with `dropOldestBeyond`, keeps at most that many queued (oldest dropped).
    func push(_ message: Element, dropOldestBeyond limit: Int? = nil) {
        let waiter = state.withLock { state -> CheckedContinuation<Result<Element?, any Error>, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter.continuation
            }
            state.queue.append(message)
            unconsumed.add(1, ordering: .relaxed)
            if let limit, state.queue.count - state.head > limit {
                _ = state.take()
                unconsumed.subtract(1, ordering: .relaxed)
            }
            return nil
        }
        waiter?.resume(returning: .success(message))
    }

    func finish(_ end: Result<Void, any Error>) {
        let waiter = state.withLock { state in
            if state.end == nil { state.end = end }
            defer { state.waiter = nil }
            return state.waiter?.continuation
        }
        switch end {
        case .success: waiter?.resume(returning: .success(nil))
        case .failure(let error): waiter?.resume(returning: .failure(error))
        }
    }

    func next() async throws -> Element? {
        if Task.isCancelled { return nil }
        let id = state.withLock { state in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let immediate = state.withLock { state -> Result<Element?, any Error>? in
                    if let message = state.take() {
                        return .success(message)
                    }
                    if let end = state.end { return end.map { nil } }
                    // Cancelled before registering: onCancel already ran and found no waiter.
                    if Task.isCancelled { return .success(nil) }
                    precondition(state.waiter == nil, "a ZMQChannel inbox has one consumer at a time")
                    state.waiter = (id, continuation)
                    return nil
                }
                if let immediate {
                    if case .success(.some) = immediate { consumedQueued() }
                    continuation.resume(returning: immediate)
                }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Result<Element?, any Error>, Never>? in
                guard let waiter = state.waiter, waiter.id == id else { return nil }
                state.waiter = nil
                return waiter.continuation
            }
            waiter?.resume(returning: .success(nil))
        }
        return try result.get()
    }
}
