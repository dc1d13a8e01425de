import FedIO
import FedLogic
package import FedModel
import FedNode
import Foundation

/// `edge-agent bench agent`: sizes a regional node in one process — simulate N shoppers into a
/// temporary store through the real import path, run one local training round over all of them, and
/// score 100,000 live events with every shopper's state resident.
package enum AgentBenchmark {
    package struct Result: Sendable {
        package var users: Int
        package var model: String
        package var events: Int
        package var peakRSSMiB: Double
        package var importEventsPerSecond: Double
        package var trainRoundSeconds: Double
        package var scoreEventsPerSecond: Double

        package var jsonLine: String {
            String(format: "{\"users\":%d,\"model\":\"%@\",\"events\":%d,\"peak_rss_mib\":%.1f,\"import_events_per_s\":%.0f,"
                   + "\"train_round_s\":%.2f,\"score_events_per_s\":%.0f}", users, model, events, peakRSSMiB,
                   importEventsPerSecond, trainRoundSeconds, scoreEventsPerSecond)
        }
    }

    /// Peak resident set size of this process so far, MiB (getrusage: KiB on Linux).
    package static func peakRSSMiB() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_maxrss) / 1024
    }

    package static func run(users: Int, model: String, shape: LSTMShape, threads: Int = 1,
                            progress: (String) -> Void = { _ in }) throws -> Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-bench-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let csv = directory.appendingPathComponent("events.csv").path

        // 1. Simulate shoppers into a Taobao CSV (streamed, so memory does not grow with N).
        var parameters = ShopperSimulator.Parameters()
        parameters.users = users
        guard FileManager.default.createFile(atPath: csv, contents: nil), let file = FileHandle(forWritingAtPath: csv)
        else { throw StorageError(path: csv, operation: "create", reason: "cannot write the temporary file") }
        try ShopperSimulator(parameters: parameters).run(usersPerBatch: 256) { batch in
            try file.write(contentsOf: Data(batch.taobaoCSV().utf8))
        }
        try file.close()
        progress("simulated \(users) shoppers")

        // 2. Import through the real path: parse, batch, durable SQLite commits; catalog counts on the side.
        let store = try EventStore(path: directory.appendingPathComponent("events.sqlite").path)
        let importStart = ContinuousClock.now
        let summary = try EventFileReader(path: csv, format: .taobao).read { batch in try store.append(batch) }
        let importSeconds = (ContinuousClock.now - importStart).inSeconds
        progress("imported \(summary.accepted) events")
        let catalog = CategoryCatalog(itemsPerCategory: try store.itemsPerCategory(), categories: shape.categories)

        // 3. One local training round over every shopper's recent events.
        let sequenceLength = ModelBenchmark.steps(for: model)
        let hyperparameters = RoundHyperparameters(samplingRate: 1, clipNorm: 1, noiseMultiplier: 0, learningRate: 0.1,
                                                   localSteps: 1, sequenceLength: UInt32(sequenceLength))
        let global = LSTMParameters<Float>(shape: shape, seed: 1)
        let trainStart = ContinuousClock.now
        var sequences: [EventSequence] = []
        sequences.reserveCapacity(users)
        try store.forEachRecentSequence(limit: sequenceLength) { _, events in
            sequences.append(EventSequence(events: events, catalog: catalog))
        }
        let round = LocalTraining(hyperparameters: hyperparameters, threads: threads).run(global: global, users: sequences)
        let trainSeconds = (ContinuousClock.now - trainStart).inSeconds
        progress("trained one round over \(round.sampledUsers) shoppers")

        // 4. Score 100,000 live events with all shoppers' states resident.
        let scorer = StreamingScorer(parameters: global)
        let stateSize = scorer.stateSize
        var states = [Float](repeating: 0, count: users * stateSize)
        var random = SplitMix64(seed: 11)
        let scoreStart = ContinuousClock.now
        // unsafe: all users' states in one array, stepped in place, as the scorer itself measures it
        states.withUnsafeMutableBufferPointer { buffer in
            for user in 0..<users { scorer.reset(buffer.baseAddress! + user * stateSize) }
            for _ in 0..<100_000 {
                let user = Int(random.next() % UInt64(users))
                scorer.step(buffer.baseAddress! + user * stateSize, category: Int(random.next() % UInt64(shape.categories)),
                            action: 0, gap: 3)
            }
        }
        let scoreSeconds = (ContinuousClock.now - scoreStart).inSeconds
        return Result(users: users, model: model, events: summary.accepted, peakRSSMiB: peakRSSMiB(),
                      importEventsPerSecond: Double(summary.accepted) / importSeconds, trainRoundSeconds: trainSeconds,
                      scoreEventsPerSecond: 100_000 / scoreSeconds)
    }

}
