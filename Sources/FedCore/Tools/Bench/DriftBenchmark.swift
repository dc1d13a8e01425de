import FedIO
import FedLogic
package import FedModel
import FedNode
import Foundation

/// `edge-agent bench drift`: the full per-event path of live scoring — user state lookup, LSTM step,
/// drift detector update, threshold check, item popularity — with `users` users' states resident.
package enum DriftBenchmark {
    package struct Result: Sendable {
        package var model: String
        package var users: Int
        package var events: Int
        package var p50Microseconds: Double
        package var p99Microseconds: Double
        package var eventsPerSecond: Double
        /// Resident memory added per user state (RSS growth while warming ÷ users).
        package var bytesPerUser: Double
        package var alerts: Int

        package var jsonLine: String {
            String(format: "{\"model\":\"%@\",\"users\":%d,\"events\":%d,\"p50_us\":%.2f,\"p99_us\":%.2f,"
                   + "\"events_per_s\":%.0f,\"bytes_per_user\":%.0f,\"alerts\":%d}", model, users, events,
                   p50Microseconds, p99Microseconds, eventsPerSecond, bytesPerUser, alerts)
        }
    }

    static func residentBytes() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
              let pages = text.split(separator: " ").dropFirst().first.flatMap({ Double($0) }) else { return 0 }
        return pages * Double(sysconf(Int32(_SC_PAGESIZE)))
    }

    package static func run(model: String, shape: LSTMShape, users: Int, events: Int) -> Result {
        var random = SplitMix64(seed: 11)
        let catalog = CategoryCatalog(
            itemsPerCategory: Dictionary(uniqueKeysWithValues: (0..<(shape.categories - 1)).map { (UInt64(1_000 + $0), 10_000 - $0) }),
            categories: shape.categories)
        let engine = DriftEngine(parameters: LSTMParameters(shape: shape, seed: 1), modelVersion: 1, catalog: catalog,
                                 settings: DriftEngine.Settings(region: "bench"))
        // Each user has a few favourite categories, so profiles look like shoppers'.
        func event(user: UInt64, time: Int64) -> BehaviorEvent {
            let category = 1_000 + (user &* 2_654_435_761 &+ random.next() % 6) % UInt64(shape.categories - 1)
            return BehaviorEvent(user: user, item: random.next() % 1_000_000, category: category,
                                 action: random.next() % 10 == 0 ? .cart : .view, timestamp: time)
        }
        let before = residentBytes()
        var time: Int64 = 1_600_000_000
        for user in 0..<users {
            for _ in 0..<3 { _ = engine.process(event(user: UInt64(user), time: time)) }
            time += 1
        }
        let perUser = (residentBytes() - before) / Double(max(users, 1))
        // One event a second of event time: the churn clock checks every resident user's silence once an
        // hour (55 sweeps over the run), and those sweeps are part of the measured path.
        let stream = (0..<events).map { index in
            event(user: random.next() % UInt64(users), time: 1_600_100_000 + Int64(index))
        }
        var latencies = [Double](repeating: 0, count: events)
        var alerts = 0
        let start = ContinuousClock.now
        for (index, item) in stream.enumerated() {
            let begin = ContinuousClock.now
            alerts += engine.advanceClock(to: item.timestamp).count
            if engine.process(item) != nil { alerts += 1 }
            latencies[index] = (ContinuousClock.now - begin).inSeconds
        }
        let total = (ContinuousClock.now - start).inSeconds
        latencies.sort()
        return Result(model: model, users: users, events: events, p50Microseconds: latencies[events / 2] * 1e6,
                      p99Microseconds: latencies[events * 99 / 100] * 1e6, eventsPerSecond: Double(events) / total,
                      bytesPerUser: perUser, alerts: alerts)
    }
}
