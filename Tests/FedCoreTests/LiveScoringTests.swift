import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation
import Glibc
import Logging
import Testing

/// The agent's live scoring thread against an oracle: a ``DriftEngine`` driven directly, in the same
/// order, from the same store. Also that queries are served during a history replay, not after it.
@Suite("Live scoring on its own thread", .timeLimit(.minutes(2)))
struct LiveScoringTests {
    private struct Fixture {
        let directory: URL
        let store: EventStore
        let catalog: CategoryCatalog
        let parameters: LSTMParameters<Float>
        let settings: DriftEngine.Settings
        /// Simulated events, in time order, split into history (stored before the model) and live.
        let history: [BehaviorEvent]
        let live: [BehaviorEvent]

        init(users: Int, days: Int) throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("live-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            var simulation = ShopperSimulator.Parameters()
            simulation.users = users
            simulation.days = days
            let events = ShopperSimulator(parameters: simulation).run().events.sorted { $0.timestamp < $1.timestamp }
            var items: [UInt64: Set<UInt64>] = [:]
            CategoryCatalog.itemsPerCategory(events, into: &items)
            catalog = CategoryCatalog(itemsPerCategory: items.mapValues(\.count), categories: 512)
            parameters = LSTMParameters(shape: LSTMShape(categories: 512, embedding: 8, hidden: 16), seed: 5)
            var settings = DriftEngine.Settings(region: "region-1")
            settings.coldStartThreshold = -1  // low, so that the streams raise many alerts to compare
            self.settings = settings
            let split = events.count * 2 / 3
            history = Array(events[..<split])
            live = Array(events[split...])
            store = try EventStore(path: directory.appendingPathComponent("events.sqlite").path)
        }

        func scoring() -> LiveScoring {
            LiveScoring(catalog: catalog, settings: settings, store: store, logger: Logger(label: "test"))
        }

        /// The oracle: a fresh engine warmed with each user's last ``LiveScoring/replayEvents`` events
        /// among those stored with row id ≤ `upTo` (users in storage order), then given `live` in order.
        func expectedAlerts(live: [BehaviorEvent], upTo: Int64 = .max) throws -> [DriftAlert] {
            let engine = DriftEngine(parameters: parameters, modelVersion: 1, catalog: catalog, settings: settings)
            _ = try store.forEachRecentSequence(limit: LiveScoring.replayEvents, after: nil, users: 1 << 30,
                                                upTo: upTo) { _, events in events.forEach(engine.warm) }
            return live.compactMap { engine.process($0) }
        }
    }

    /// Waits until the scoring thread finished its replay and scored `events` live events.
    private func settle(_ scoring: LiveScoring, events: Int) async throws {
        for _ in 0..<12_000 where scoring.progress.modelVersion == nil || scoring.progress.replaying
            || scoring.progress.eventsScored < events {
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    private func collect(_ scoring: LiveScoring) -> Task<[DriftAlert], Never> {
        Task { await scoring.alerts.reduce(into: []) { $0 += $1 } }
    }

    @Test("Events stored before the model are replayed, events after it are scored live: each once, as the oracle does")
    func exactlyOnceAgainstOracle() async throws {
        let fixture = try Fixture(users: 300, days: 4)
        defer { try? FileManager.default.removeItem(at: fixture.directory) }
        let scoring = fixture.scoring()
        let alerts = collect(scoring)
        // History stored and submitted before any model: stored, not scored (there is nothing to score with).
        let before = try fixture.store.append(fixture.history)
        scoring.submit(fixture.history, ids: before)
        // The race at the boundary: a batch stored before the model arrived but handed over after it.
        let boundary = Array(fixture.live.prefix(50))
        let boundaryIDs = try fixture.store.append(boundary)
        scoring.install(fixture.parameters, modelVersion: 1)
        scoring.submit(boundary, ids: boundaryIDs)
        // Live events while the replay may still run, then after it.
        let rest = Array(fixture.live.dropFirst(50))
        for chunk in stride(from: 0, to: rest.count, by: 100) {
            let batch = Array(rest[chunk..<min(chunk + 100, rest.count)])
            scoring.submit(batch, ids: try fixture.store.append(batch))
        }
        try await settle(scoring, events: rest.count)
        #expect(scoring.progress.eventsScored == rest.count, "boundary events were scored twice or live events lost")
        scoring.stop()
        let raised = await alerts.value
        let expected = try fixture.expectedAlerts(live: rest, upTo: boundaryIDs?.upperBound ?? 0)
        #expect(!expected.isEmpty, "the fixture should raise alerts, or this test proves nothing")
        // Ids carry each engine's random instance; everything else must be identical.
        #expect(raised.map(Self.withoutID) == expected.map(Self.withoutID))
        #expect(Set(raised.map(\.id)).count == raised.count, "alert ids are unique")
    }

    private static func withoutID(_ alert: DriftAlert) -> DriftAlert {
        var copy = alert
        copy.id = ""
        return copy
    }

    @Test("A control: events scored twice change the alerts, so the comparison above can fail")
    func controlDoubleScoring() async throws {
        let fixture = try Fixture(users: 300, days: 4)
        defer { try? FileManager.default.removeItem(at: fixture.directory) }
        let boundary = Array(fixture.live.prefix(50)), rest = Array(fixture.live.dropFirst(50))
        let upTo = try fixture.store.append(fixture.history + boundary)?.upperBound ?? 0
        let once = try fixture.expectedAlerts(live: rest, upTo: upTo)
        // The boundary and the next live events scored a second time, as a broken hand-over would.
        let twice = try fixture.expectedAlerts(live: boundary + Array(rest.prefix(150)) + rest, upTo: upTo)
        #expect(once.map(Self.withoutID) != twice.map(Self.withoutID))
    }

    @Test("A recommendation query is answered during the history replay, not after it")
    func queryDuringReplay() async throws {
        let fixture = try Fixture(users: 800, days: 4)
        defer { try? FileManager.default.removeItem(at: fixture.directory) }
        _ = try fixture.store.append(fixture.history + fixture.live)
        let scoring = fixture.scoring()
        defer { scoring.stop() }
        // Timed on a thread of its own: under a busy test runner, a task's resumption on the cooperative
        // pool can wait for other suites, which is not what this test is about.
        let user = fixture.live[0].user, parameters = fixture.parameters
        let (answered, replayed) = try await onDedicatedThread { () -> (Duration, Duration) in
            let started = ContinuousClock.now
            scoring.install(parameters, modelVersion: 1)
            _ = scoring.recommendBlocking(user: user, count: 5)
            let answered = ContinuousClock.now - started
            while scoring.progress.modelVersion == nil || scoring.progress.replaying { usleep(5_000) }
            return (answered, ContinuousClock.now - started)
        }
        #expect(answered < replayed / 4, "answered after \(answered), the replay took \(replayed)")
        #expect(await scoring.recommend(user: fixture.live[0].user, count: 5)?.count == 5)
    }
}
