@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

@Suite("Drift engine: alerts, recommendations, persist-then-publish", .timeLimit(.minutes(1)))
struct DriftEngineTests {
    static func engine(threshold: Double = 8, churnThreshold: Double = 8) -> DriftEngine {
        let shape = LSTMShape(categories: 16, embedding: 8, hidden: 8)
        let catalog = CategoryCatalog(itemsPerCategory: Dictionary(uniqueKeysWithValues: (0..<15).map { (UInt64(100 + $0), 100 - $0) }),
                                      categories: 16)
        var settings = DriftEngine.Settings(region: "region-1")
        settings.coldStartThreshold = threshold
        settings.coldStartChurnThreshold = churnThreshold
        return DriftEngine(parameters: LSTMParameters(shape: shape, seed: 3), modelVersion: 7, catalog: catalog,
                           settings: settings)
    }

    @Test("Recommendations rank p(category) × recency-weighted popularity and skip items the user just bought")
    func recommendationRanking() {
        let engine = Self.engine(threshold: 1e9)
        // Regional popularity in category 101: item 1 bought often long ago, item 2 viewed recently, item 3 once.
        var time: Int64 = 1_600_000_000
        for _ in 0..<10 { _ = engine.process(BehaviorEvent(user: 50, item: 1, category: 101, action: .view, timestamp: time)) }
        time += 10 * 86_400
        for _ in 0..<4 { _ = engine.process(BehaviorEvent(user: 51, item: 2, category: 101, action: .view, timestamp: time)) }
        _ = engine.process(BehaviorEvent(user: 52, item: 3, category: 101, action: .view, timestamp: time))
        _ = engine.process(BehaviorEvent(user: 9, item: 3, category: 101, action: .purchase, timestamp: time))
        let ranked = engine.recommend(user: 9, categories: [engine.catalog.modelIndex(of: 101)], count: 3)
        // Item 1's ten old views are worth 10 × 2^-5 ≈ 0.31 now; item 2's four recent views 4; item 3 is excluded.
        #expect(ranked.map(\.item) == [2, 1], "\(ranked)")
        #expect(ranked.allSatisfy { $0.category == 101 })
        #expect(ranked[0].score > ranked[1].score)
    }

    @Test("The LSTM state behind recommendations is the model stepped over the user's last 50 events, from a fresh state")
    func lazyModelState() throws {
        let engine = Self.engine(threshold: 1e9)
        let shape = LSTMShape(categories: 16, embedding: 8, hidden: 8)
        let scorer = StreamingScorer(parameters: LSTMParameters<Float>(shape: shape, seed: 3))
        var random = SplitMix64(seed: 8)
        var time: Int64 = 1_600_000_000, events: [BehaviorEvent] = []
        for _ in 0..<137 {
            time += Int64(random.next() % 4_000)
            let action: BehaviorEvent.Action = [.view, .cart, .favourite, .purchase][Int(random.next() % 4)]
            events.append(BehaviorEvent(user: 5, item: 1, category: 100 + random.next() % 15, action: action, timestamp: time))
        }
        for event in events { _ = engine.process(event) }
        var expected = [Float](repeating: 0, count: scorer.stateSize)
        scorer.reset(&expected)
        for index in (events.count - 50)..<events.count {
            let gap = EventSequence.gapBucket(seconds: Double(events[index].timestamp - events[index - 1].timestamp))
            scorer.step(&expected, category: Int(engine.catalog.modelIndex(of: events[index].category)),
                        action: Int(events[index].action.rawValue), gap: Int(gap))
        }
        let state = try #require(engine.modelState(of: 5))
        #expect(state == expected)
        func stepped(over range: Range<Int>) -> [Float] {
            var state = [Float](repeating: 0, count: scorer.stateSize)
            scorer.reset(&state)
            for index in range {
                let gap = EventSequence.gapBucket(seconds: index == 0 ? nil
                                                  : Double(events[index].timestamp - events[index - 1].timestamp))
                scorer.step(&state, category: Int(engine.catalog.modelIndex(of: events[index].category)),
                            action: Int(events[index].action.rawValue), gap: Int(gap))
            }
            return state
        }
        // Control: a shorter window gives another state (so a cut-short window would fail the check above)…
        #expect(stepped(over: (events.count - 10)..<events.count) != expected)
        // …while the whole history gives the same one to float precision: nothing older than the model's
        // training window is lost by not stepping every event.
        let full = stepped(over: 0..<events.count)
        #expect(zip(full, expected).allSatisfy { abs($0 - $1) < 1e-4 })
        #expect(engine.modelState(of: 6) == nil)
    }

    @Test("A shopper who goes silent is warned once, on the event-time clock, with why; one far-future event moves no clock")
    func churnWarning() {
        let engine = Self.engine(threshold: 1e9, churnThreshold: 2)
        let start: Int64 = 1_600_000_000
        // 200 shoppers, a session every 12 hours (3 events, a minute apart) for 6 days; shopper 7 stops after
        // day 3. (The clock is a watermark over the last 128 events, so the stream must be that dense.)
        var events: [BehaviorEvent] = []
        for session in 0..<12 {
            for user in UInt64(1)...200 where !(user == 7 && session >= 6) {
                for step in 0..<3 {
                    events.append(BehaviorEvent(user: user, item: UInt64(step), category: 100 + user % 5, action: .view,
                                                timestamp: start + Int64(session) * 43_200 + Int64(user) * 90 + Int64(step) * 60))
                }
            }
        }
        events.sort { $0.timestamp < $1.timestamp }
        var warnings: [DriftAlert] = []
        for event in events {
            warnings += engine.advanceClock(to: event.timestamp)
            _ = engine.process(event)
        }
        #expect(warnings.map(\.user) == [7], "\(warnings.map { ($0.user, $0.time) })")
        let warning = warnings.first
        #expect(warning?.kind == .churnRisk && warning?.threshold == 2 && (warning?.score ?? 0) >= 2)
        #expect((warning?.silenceDays ?? 0) >= 0.5 && (warning?.time ?? 0) > start + 5 * 43_200)
        #expect(warning?.explanation.hasPrefix("Churn risk: silent for") == true, "\(warning?.explanation ?? "")")
        #expect(warning?.fading.first?.category == 102 && warning?.recommendations.isEmpty == false)
        // One event stamped a year later: the watermark does not move, nobody is warned.
        let late = start + 365 * 86_400
        #expect(engine.advanceClock(to: late).isEmpty)
        _ = engine.process(BehaviorEvent(user: 99, item: 1, category: 101, action: .view, timestamp: late))
        // Control: when the stream itself moves on (128 events), the clock follows and the silent are warned.
        var moved: [DriftAlert] = []
        for step in 0..<128 {
            moved += engine.advanceClock(to: late + Int64(step))
            _ = engine.process(BehaviorEvent(user: 1_000 + UInt64(step), item: 1, category: 101, action: .view,
                                             timestamp: late + Int64(step)))
        }
        // Everyone but shopper 7 (already warned in this silence) and 99 (the one active "a year later").
        let expected = Set((UInt64(1)...200).filter { $0 != 7 && $0 != 99 }), warned = Set(moved.map(\.user))
        #expect(warned == expected, "missing \(expected.subtracting(warned).sorted()), extra \(warned.subtracting(expected).sorted())")
    }

    @Test("An abrupt shift in a live stream raises one alert with emerging categories and recommendations from them")
    func alertOnShift() {
        // The switch detector: a stable 3-category mix keeps the statistic near or below 0; moving to 2
        // categories never seen before, and never returning, makes a recent changepoint far more likely
        // than the long-run profile: the statistic climbs past the threshold within a few changes.
        let engine = Self.engine(threshold: 1)
        var random = SplitMix64(seed: 2)
        var alerts: [DriftAlert] = []
        var time: Int64 = 1_600_000_000
        // Other shoppers make items popular in the categories the user will move to.
        for item in 0..<20 {
            _ = engine.process(BehaviorEvent(user: 77, item: UInt64(1_000 + item), category: 110, action: .view, timestamp: time))
        }
        for index in 0..<300 {
            time += 60
            let category: UInt64 = index < 150 ? [100, 101, 102][Int(random.next() % 3)] : [110, 111][Int(random.next() % 2)]
            if let alert = engine.process(BehaviorEvent(user: 5, item: UInt64(index), category: category, action: .view,
                                                        timestamp: time)) {
                alerts.append(alert)
            }
        }
        let userAlerts = alerts.filter { $0.user == 5 }
        #expect(userAlerts.count >= 1)
        let alert = userAlerts.first
        #expect(alert.map { Set($0.emerging.map(\.category)).isSubset(of: [110, 111]) } == true, "\(String(describing: alert))")
        #expect(alert?.fading.isEmpty == false)
        #expect(alert?.modelVersion == 7 && alert?.region == "region-1")
        #expect(alert?.recommendations.isEmpty == false)
        #expect(alert?.recommendations.allSatisfy { [110, 111].contains($0.category) } == true)
        #expect(userAlerts.count <= 2, "one shift, \(userAlerts.count) alerts")
    }

    @Test("Alerts are stored before they are published; after a crash the unconfirmed ones go out again with the same id")
    func persistThenPublish() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-alerts-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let storePath = directory.appendingPathComponent("alerts.sqlite").path
        let jsonl = directory.appendingPathComponent("alerts.jsonl").path
        let alert = DriftAlert(id: "region-1-1-1", user: 5, region: "region-1", time: 1, score: 9, threshold: 8,
                               kind: .interestShift, emerging: [.init(category: 110, before: 0, after: 0.6)],
                               fading: [.init(category: 100, before: 0.5, after: 0)], events: 4, modelVersion: 3,
                               recommendations: [.init(item: 1_001, category: 110, score: 0.2)],
                               explanation: "Interest shift")
        // "Crash" between the commit and the publication: the alert is stored, not marked published.
        let crashed = try AlertStore(path: storePath)
        try crashed.record([alert])
        #expect(try crashed.unpublished().map(\.id) == [alert.id])

        let context = try ZMQContext()
        let publisherChannel = try ZMQChannel(context: context, configuration: .init(kind: .pub, bind: ["tcp://127.0.0.1:*"]))
        defer { publisherChannel.close() }
        let subscriber = try ZMQChannel(context: context, configuration: .init(
            kind: .sub, connect: publisherChannel.boundEndpoints, subscriptions: [Array("alert.region-1".utf8)]))
        defer { subscriber.close() }
        try await Task.sleep(for: .milliseconds(300))  // let the subscription reach the publisher
        let restarted = AlertPublisher(store: try AlertStore(path: storePath), channel: publisherChannel, file: jsonl)
        #expect(try await restarted.republishPending() == 1)
        let message = try #require(try await subscriber.receive(timeout: .seconds(5)))
        #expect(String(decoding: message.frames[0], as: UTF8.self) == "alert.region-1.interest_shift")
        let received = try JSONDecoder().decode(DriftAlert.self, from: Data(message.frames[1]))
        #expect(received == alert)
        #expect(try AlertStore(path: storePath).unpublished().isEmpty)
        let lines = try String(contentsOfFile: jsonl, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("\"id\":\"region-1-1-1\""))
        // Recording the same alert again does not duplicate it.
        try AlertStore(path: storePath).record([alert])
        #expect(try AlertStore(path: storePath).list().count == 1)
    }
}
