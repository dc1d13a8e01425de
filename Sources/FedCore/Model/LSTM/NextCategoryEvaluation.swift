import Foundation

/// Held-out next-category evaluation: for each user, the model reads the user's events up to the
/// most recent one and ranks every category for that most recent event, which training never sees
/// (agents train on each sequence without its last event). Full ranking over all categories except
/// the out-of-vocabulary class; users whose held-out event is out of vocabulary are skipped.
package struct NextCategoryEvaluation: Sendable, Equatable {
    package var users = 0
    package var top1Hits = 0
    package var top10Hits = 0
    /// Σ of NDCG@10 (1 / log₂(rank + 2) when rank < 10).
    package var ndcg10Sum = 0.0
    /// Σ of the held-out event's cross-entropy, nats.
    package var lossSum = 0.0

    package init() {}

    package var hr1: Double { users == 0 ? 0 : Double(top1Hits) / Double(users) }
    package var hr10: Double { users == 0 ? 0 : Double(top10Hits) / Double(users) }
    package var ndcg10: Double { users == 0 ? 0 : ndcg10Sum / Double(users) }
    package var meanLoss: Double { users == 0 ? 0 : lossSum / Double(users) }

    package mutating func merge(_ other: NextCategoryEvaluation) {
        users += other.users
        top1Hits += other.top1Hits
        top10Hits += other.top10Hits
        ndcg10Sum += other.ndcg10Sum
        lossSum += other.lossSum
    }

    /// Whether `sequence` (events with the held-out one last) can be evaluated with `catalogOOV`.
    package static func isEvaluable(_ sequence: EventSequence, outOfVocabulary: Int32) -> Bool {
        sequence.count >= 2 && sequence.categories[sequence.count - 1] != outOfVocabulary
    }

    /// Evaluates `sequences` (each: the user's recent events, the held-out one last) in batches.
    /// `lossClamp` caps each user's loss (nats) so that one user's share of the sum is bounded.
    package static func evaluate(parameters: LSTMParameters<Float>, sequences: [EventSequence],
                                 outOfVocabulary: Int32, lossClamp: Double = .infinity,
                                 batchSize: Int = 64) -> NextCategoryEvaluation {
        let workspace = LSTMWorkspace<Float>(shape: parameters.shape)
        let C = parameters.shape.categories, oov = Int(outOfVocabulary)
        var result = NextCategoryEvaluation()
        let cases = sequences.filter { isEvaluable($0, outOfVocabulary: outOfVocabulary) }
        for start in stride(from: 0, to: cases.count, by: batchSize) {
            let batch = SequenceBatch(Array(cases[start..<min(start + batchSize, cases.count)]))
            workspace.forward(parameters: parameters, batch: batch)
            let B = batch.batchSize
            let logits = workspace.logits.pointer
            for b in 0..<B {
                let length = batch.lengths[b]
                let row = logits + ((length - 2) * B + b) * C
                let target = Int(batch.categories[(length - 1) * B + b])
                let score = row[target]
                var rank = 0
                for k in 0..<C where k != oov && row[k] > score { rank += 1 }
                result.users += 1
                if rank == 0 { result.top1Hits += 1 }
                if rank < 10 {
                    result.top10Hits += 1
                    result.ndcg10Sum += 1 / Foundation.log2(Double(rank) + 2)
                }
                result.lossSum += min(lossClamp, Double(Float.logSumExp(row, count: C) - score))
            }
        }
        return result
    }
}
