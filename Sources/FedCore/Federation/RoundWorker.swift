import Foundation

/// What an agent computed for one round.
package struct RoundWork: Sendable {
    package var submission: UpdateSubmission
    /// Held-out evaluation of the round's global model; nil when nothing could be evaluated.
    package var evaluation: EvaluationReport?
    package var sampledUsers: Int
    package var clippedUsers: Int
    package var meanLoss: Double
    package var seconds: Double

    package init(submission: UpdateSubmission, evaluation: EvaluationReport?, sampledUsers: Int, clippedUsers: Int,
                 meanLoss: Double, seconds: Double) {
        self.submission = submission
        self.evaluation = evaluation
        self.sampledUsers = sampledUsers
        self.clippedUsers = clippedUsers
        self.meanLoss = meanLoss
        self.seconds = seconds
    }
}

/// An agent's local work for a round. Runs on a dedicated thread (it is CPU-bound and synchronous).
package protocol RoundWorker: Sendable {
    func work(global: LSTMParameters<Float>, modelVersion: UInt64, round: RoundOpen) throws -> RoundWork
}

/// The real worker: reads each user's recent events from the store, holds out the most recent one,
/// evaluates the global model on it for a fixed set of users, Poisson-samples users with the CSPRNG,
/// trains and clips their updates and sums them (``LocalTraining``).
package struct StoreRoundWorker: RoundWorker {
    package let store: EventStore
    package let catalog: CategoryCatalog
    package let evaluationUsers: Int
    package let threads: Int

    package init(store: EventStore, catalog: CategoryCatalog, evaluationUsers: Int, threads: Int) {
        self.store = store
        self.catalog = catalog
        self.evaluationUsers = evaluationUsers
        self.threads = threads
    }

    /// One pass over the store: each user's last `sequenceLength + 1` events. The training sequence
    /// is all but the most recent event (kept for `isTrained`); the first `evaluationUsers` evaluable
    /// users (in user-id order, so the same users every round) are returned whole for evaluation.
    package static func read(store: EventStore, catalog: CategoryCatalog, sequenceLength: Int, evaluationUsers: Int,
                             isTrained: (EventSequence) -> Bool) throws(StorageError)
        -> (training: [EventSequence], evaluation: [EventSequence])
    {
        var training: [EventSequence] = [], evaluation: [EventSequence] = []
        try store.forEachRecentSequence(limit: sequenceLength + 1) { _, events in
            let sequence = EventSequence(events: events, catalog: catalog)
            if evaluation.count < evaluationUsers,
               NextCategoryEvaluation.isEvaluable(sequence, outOfVocabulary: catalog.outOfVocabulary) {
                evaluation.append(sequence)
            }
            let prefix = EventSequence(categories: Array(sequence.categories.dropLast()),
                                       actions: Array(sequence.actions.dropLast()), gaps: Array(sequence.gaps.dropLast()))
            if isTrained(prefix) { training.append(prefix) }
        }
        return (training, evaluation)
    }

    package func work(global: LSTMParameters<Float>, modelVersion: UInt64, round: RoundOpen) throws -> RoundWork {
        let started = ContinuousClock.now
        let training = LocalTraining(hyperparameters: round.hyperparameters, threads: threads)
        var random = SodiumRandom()
        let data = try Self.read(store: store, catalog: catalog, sequenceLength: Int(round.hyperparameters.sequenceLength),
                                 evaluationUsers: evaluationUsers) { training.isSampled($0, random: &random) }
        let evaluation = NextCategoryEvaluation.evaluate(parameters: global, sequences: data.evaluation,
                                                         outOfVocabulary: catalog.outOfVocabulary)
        let result = training.run(global: global, users: data.training)
        let report = evaluation.users == 0 ? nil : EvaluationReport(
            round: round.round, modelVersion: modelVersion, users: UInt32(evaluation.users),
            top1Hits: UInt32(evaluation.top1Hits), top10Hits: UInt32(evaluation.top10Hits), lossSum: evaluation.lossSum)
        return RoundWork(
            submission: UpdateSubmission(round: round.round, modelVersion: modelVersion,
                                         users: UInt32(result.sampledUsers), values: result.deltaSum),
            evaluation: report, sampledUsers: result.sampledUsers, clippedUsers: result.clippedUsers,
            meanLoss: result.meanLoss, seconds: (ContinuousClock.now - started).inSeconds)
    }
}

/// Runs `body` on a new thread and resumes with its result, so CPU-bound work never occupies one of
/// the few cooperative threads that the sockets' tasks need.
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
