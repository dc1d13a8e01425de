import Synchronization

/// A vector that must not outlive its use: an agent's update on the secure grid, carrying only its 1/t
/// share of the noise. One owner holds the only copy of the storage (inside the lock, never copied
/// out), so zeroing it in place when the owner goes really clears the memory — an array passed around
/// by value would be copied on write and the zeroing would reach only the copy.
package final class SecretWords: Sendable, Equatable {
    private let storage: Mutex<[UInt32]>
    package let count: Int

    package init(_ words: consuming [UInt32]) {
        count = words.count
        storage = Mutex(words)
    }

    /// Reads the words in place (the closure must not keep them).
    package func read<R: Sendable, E: Error>(_ body: ([UInt32]) throws(E) -> R) throws(E) -> R {
        try storage.withLock { (words) throws(E) -> R in try body(words) }
    }

    /// Zeroes the words now (also done when the last reference goes).
    package func wipe() {
        // The array is uniquely referenced inside the lock, so these stores go to its own storage.
        storage.withLock { words in
            for index in words.indices { words[index] = 0 }
        }
    }

    deinit { wipe() }

    package static func == (lhs: SecretWords, rhs: SecretWords) -> Bool { lhs === rhs }
}
