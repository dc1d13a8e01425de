import Dispatch
import Foundation

/// Runs `body` on a new thread and resumes with its result, so long CPU-bound work (a round's local
/// training: seconds) never occupies one of the few cooperative threads that the sockets' tasks need.
package func onDedicatedThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            do {
                continuation.resume(returning: try body())
            } catch {
                continuation.resume(throwing: error)
            }
        }
        thread.stackSize = 8 << 20
        thread.start()
    }
}

/// A serial queue for short blocking work — SQLite commits and file writes that wait for the disk —
/// so that it never blocks a cooperative thread. The queue's thread is libdispatch's and is reused:
/// measured, a new thread per write (and unmapping its stack) slowed the aggregator's round.
package final class BlockingQueue: Sendable {
    private let queue: DispatchQueue

    package init(label: String) { queue = DispatchQueue(label: label) }

    /// Runs `body` on the queue, after the work queued before it, and resumes with its result.
    package func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                do {
                    continuation.resume(returning: try body())
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }
}
