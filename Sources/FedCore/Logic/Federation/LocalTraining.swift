package import FedModel

/// One agent's part of a round: sample users, train each from the global model on its own sequence,
/// clip each user's model delta to L2 norm S, and sum. The sum (noised at the agent when privacy is
/// on, issue 5) is what leaves the node — never a single user's delta, never an event.
package struct LocalTraining: Sendable {
    package struct Result: Sendable {
        /// Σ over sampled users of clip(θ_user − θ_global, S).
        package var deltaSum: [Float]
        package var sampledUsers: Int
        /// Users whose delta was scaled down by clipping.
        package var clippedUsers: Int
        /// Mean training loss of the sampled users before their update.
        package var meanLoss: Double

        /// No users: a zero sum of `count` parameters.
        package static func empty(count: Int) -> Result {
            Result(deltaSum: [Float](repeating: 0, count: count), sampledUsers: 0, clippedUsers: 0, meanLoss: 0)
        }
    }

    package var hyperparameters: RoundHyperparameters
    package var threads: Int
    /// Users per batched pass: activations grow with batch × steps × categories (the logits of 32
    /// users × 50 steps × 1024 categories are 6.5 MB), so a small batch keeps a node within 64 MiB.
    static let miniBatch = 32

    package init(hyperparameters: RoundHyperparameters, threads: Int = 1) {
        self.hyperparameters = hyperparameters
        self.threads = threads
    }

    /// Poisson sampling: each user independently with probability q.
    package func sample<G: RandomNumberGenerator>(_ users: [EventSequence], random: inout G) -> [EventSequence] {
        users.filter { isSampled($0, random: &random) }
    }

    /// One user's Poisson draw: a user with at least one transition is in the round with probability q.
    package func isSampled<G: RandomNumberGenerator>(_ user: EventSequence, random: inout G) -> Bool {
        user.count >= 2 && Double.random(in: 0..<1, using: &random) < hyperparameters.samplingRate
    }

    /// Trains `users` (already sampled) from `global`.
    ///
    /// With one local SGD step the user's delta is −η·g_u, so clipping the delta to S is clipping the
    /// gradient to S/η, and the whole sum comes from one batched per-example pass. With more local
    /// steps each user trains on its own copy of the model.
    package func run(global: LSTMParameters<Float>, users: [EventSequence]) -> Result {
        run(global: global, users: users, shouldStop: { false }) ?? Result(
            deltaSum: [Float](repeating: 0, count: global.values.count), sampledUsers: 0, clippedUsers: 0, meanLoss: 0)
    }

    /// Trains `users` unless `shouldStop` says so between mini-batches (or users): then nil, and nothing
    /// of the partial sum is kept.
    package func run(global: LSTMParameters<Float>, users: [EventSequence], shouldStop: () -> Bool) -> Result? {
        let count = global.values.count
        guard !users.isEmpty else {
            return Result(deltaSum: [Float](repeating: 0, count: count), sampledUsers: 0, clippedUsers: 0, meanLoss: 0)
        }
        let sequences = truncated(users)
        return hyperparameters.localSteps <= 1
            ? runBatched(global: global, sequences: sequences, shouldStop: shouldStop)
            : runPerUser(global: global, sequences: sequences, shouldStop: shouldStop)
    }

    /// Truncates to the announced sequence length (most recent events).
    func truncated(_ users: [EventSequence]) -> [EventSequence] {
        let length = Int(hyperparameters.sequenceLength)
        return users.map { sequence in
            sequence.count > length
                ? EventSequence(categories: Array(sequence.categories.suffix(length)),
                                actions: Array(sequence.actions.suffix(length)), gaps: Array(sequence.gaps.suffix(length)))
                : sequence
        }
    }

    /// One local SGD step for every user at once, through the per-example clipped gradient sum.
    func runBatched(global: LSTMParameters<Float>, sequences: [EventSequence], shouldStop: () -> Bool = { false }) -> Result? {
        let S = hyperparameters.clipNorm, eta = hyperparameters.learningRate
        let trainer = ParallelTrainer<Float>(shape: global.shape, threads: threads)
        var total = [Float](repeating: 0, count: global.values.count)
        var part: [Float] = []
        var clipped = 0, loss = 0.0
        // Mini-batches bound memory: activations grow with batch × steps × categories.
        for start in stride(from: 0, to: sequences.count, by: Self.miniBatch) {
            if shouldStop() { return nil }
            let slice = Array(sequences[start..<min(start + Self.miniBatch, sequences.count)])
            let examples = trainer.clippedGradientSum(parameters: global, sequences: slice, clipNorm: S / eta, into: &part)
            for index in total.indices { total[index] += part[index] }
            clipped += examples.norms.filter { $0 * eta > S }.count
            loss += examples.meanLosses.reduce(0, +)
        }
        return Result(deltaSum: total.map { -Float(eta) * $0 }, sampledUsers: sequences.count, clippedUsers: clipped,
                      meanLoss: loss / Double(sequences.count))
    }

    /// `localSteps` SGD steps per user on its own copy of the model, then the delta is clipped.
    func runPerUser(global: LSTMParameters<Float>, sequences: [EventSequence], shouldStop: () -> Bool = { false }) -> Result? {
        let S = hyperparameters.clipNorm, eta = hyperparameters.learningRate
        let count = global.values.count
        var sum = [Double](repeating: 0, count: count)
        var clipped = 0, loss = 0.0
        let workspace = LSTMWorkspace<Float>(shape: global.shape)
        var gradient: [Float] = []
        for sequence in sequences {
            if shouldStop() { return nil }
            var local = global
            var optimizer = SGD(learningRate: eta)
            let batch = SequenceBatch([sequence])
            for step in 0..<Int(hyperparameters.localSteps) {
                let losses = workspace.gradient(parameters: local, batch: batch, into: &gradient)
                if step == 0 { loss += losses.mean }
                optimizer.step(&local.values, gradient: gradient)
            }
            var norm = 0.0
            for index in 0..<count {
                let delta = Double(local.values[index] - global.values[index])
                norm += delta * delta
            }
            norm = norm.squareRoot()
            let scale = Clipping.factor(norm: norm, bound: S)
            if scale < 1 { clipped += 1 }
            guard scale > 0 else { continue }  // a non-finite update contributes nothing
            for index in 0..<count { sum[index] += scale * Double(local.values[index] - global.values[index]) }
        }
        return Result(deltaSum: sum.map { Float($0) }, sampledUsers: sequences.count, clippedUsers: clipped,
                      meanLoss: loss / Double(sequences.count))
    }
}
