import Foundation

/// One user's events as model inputs.
package struct EventSequence: Sendable, Equatable {
    /// Model category index of each event, in time order.
    package var categories: [Int32]
    /// Action of each event (0 view, 1 cart, 2 favourite, 3 purchase); empty when unused.
    package var actions: [UInt8]
    /// Time-gap bucket of each event (see ``LSTMShape/gapBuckets``); empty when unused.
    package var gaps: [UInt8]

    package init(categories: [Int32], actions: [UInt8] = [], gaps: [UInt8] = []) {
        self.categories = categories
        self.actions = actions
        self.gaps = gaps
    }

    package var count: Int { categories.count }

    /// The log-scaled bucket of a gap in seconds: 0 for the first event, else 1 + ⌊log₂(1 + s)⌋, capped.
    package static func gapBucket(seconds: Double?) -> UInt8 {
        guard let seconds else { return 0 }
        let bucket = 1 + Int(Foundation.log2(1 + max(0, seconds)).rounded(.down))
        return UInt8(min(bucket, LSTMShape.gapBuckets - 1))
    }
}


/// A padded batch of sequences, stored time-major (`[t][b]`), with each sequence's own length.
///
/// Targets follow the reference convention: the target of step t is the category at t + 1, and the
/// last real step of a sequence has none. Validity always comes from the lengths, never from ids.
package struct SequenceBatch: Sendable {
    package let batchSize: Int
    package let steps: Int
    package let lengths: [Int]
    /// `[t * batchSize + b]`: category of sequence b at step t (0 where padded).
    package let categories: [Int32]
    package let actions: [UInt8]
    package let gaps: [UInt8]
    /// `[t * batchSize + b]`: the next category, or -1 where there is no target.
    package let targets: [Int32]
    /// Steps with a target, per sequence.
    package let validSteps: [Int]
    package var totalValidSteps: Int { validSteps.reduce(0, +) }

    /// Pads `sequences` to the longest (or to `steps` if larger).
    package init(_ sequences: [EventSequence], steps: Int? = nil) {
        let batchSize = sequences.count
        let steps = max(steps ?? 0, sequences.map(\.count).max() ?? 0)
        var categories = [Int32](repeating: 0, count: steps * batchSize)
        var actions = [UInt8](repeating: 0, count: steps * batchSize)
        var gaps = [UInt8](repeating: 0, count: steps * batchSize)
        var targets = [Int32](repeating: -1, count: steps * batchSize)
        for (b, sequence) in sequences.enumerated() {
            for t in 0..<sequence.count {
                let index = t * batchSize + b
                categories[index] = sequence.categories[t]
                if !sequence.actions.isEmpty { actions[index] = sequence.actions[t] }
                if !sequence.gaps.isEmpty { gaps[index] = sequence.gaps[t] }
                if t + 1 < sequence.count { targets[index] = sequence.categories[t + 1] }
            }
        }
        self.batchSize = batchSize
        self.steps = steps
        self.lengths = sequences.map(\.count)
        self.categories = categories
        self.actions = actions
        self.gaps = gaps
        self.targets = targets
        self.validSteps = sequences.map { max(0, $0.count - 1) }
    }
}
