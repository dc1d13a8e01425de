import Dispatch
package import FedLogic
package import FedModel
import Foundation
package import Logging
import Synchronization

/// The agent's live scoring: one dedicated thread owns the ``DriftEngine`` (user states, detector,
/// popularity) and works through a queue of jobs — new models and thresholds from the federation,
/// batches of stored events from ingest, recommendation and score queries. Callers only enqueue, so
/// nothing on the cooperative pool ever waits for scoring: ingest returns as soon as its batch is
/// queued, and alerts come out on ``alerts``.
///
/// When the first global model arrives, each user's recent stored history is replayed into the new
/// engine in pages of ``replayPageUsers`` users, and the queue is served between pages: a
/// recommendation query waits for at most one page, never for the whole replay. Live events that
/// arrive meanwhile are held and scored, in order, right after the replay; live events are scored in
/// slices of ``sliceEvents``, so a query never waits behind a long backlog either. The replay reads only
/// events stored before it began (row id ≤ the last id at that moment) and live events carry their row
/// ids, so every stored event is scored exactly once, whichever side of the boundary it fell on.
package final class LiveScoring: Sendable {
    /// Users per replay page (≤ 32 × 500 events: a query waits for at most that much work).
    package static let replayPageUsers = 32
    /// Most recent events per user replayed: as many as the alert threshold's what-if counts see.
    package static let replayEvents = AlertRateCalibration.historyEvents
    /// Live events scored between two looks at the job queue.
    package static let sliceEvents = 512
    /// Live events that may wait to be scored (queued, or held during a replay) before ``waitForRoom()``
    /// holds ingest back: about 20 MiB of events.
    package static let maxBacklogEvents = 262_144

    private enum Job: Sendable {
        /// A global model; `storedUpTo` is the last event row id stored when it arrived (the first
        /// model's replay reads up to it), nil without a store or when it could not be read.
        case model(LSTMParameters<Float>, version: UInt64, storedUpTo: Int64?)
        case thresholds(AlertThresholds)
        /// Stored events, scored (`live`) or only learned from (history another shard already scored).
        case events([BehaviorEvent], ids: ClosedRange<Int64>?, live: Bool)
        case forget(Set<UInt64>)
        case recommend(user: UInt64, count: Int, reply: @Sendable ([DriftAlert.Recommendation]?) -> Void)
        case stop
    }

    /// What the scoring thread last reported, for status and tests.
    package struct Progress: Sendable, Equatable {
        package var eventsScored = 0
        package var users = 0
        package var replaying = false
        package var modelVersion: UInt64?
    }

    /// Alerts raised by each scored batch, in order (persist, then publish them).
    package let alerts: AsyncStream<[DriftAlert]>
    private let alertSink: AsyncStream<[DriftAlert]>.Continuation
    private let jobs = Mutex<[Job]>([])
    /// Events submitted and not yet scored (or dropped before any model).
    private let backlog = Atomic<Int>(0)
    private let wake = DispatchSemaphore(value: 0)
    private let reported = Mutex(Progress())
    private let thresholdsInForce: Mutex<AlertThresholds>
    private let store: EventStore?
    private let logger: Logger

    /// Starts the scoring thread. With a `store`, the first model triggers the history replay.
    /// - Parameter thresholdsFile: where the thresholds in force are written (JSON, atomically, by the
    ///   scoring thread) whenever the aggregator sends new ones, for `edge-agent alerts`; nil: nowhere.
    /// - Parameter latency: sees the nanoseconds each live event took to score (the model step, the
    ///   detectors and any alert it raised), on the scoring thread; for the latency histogram.
    package init(catalog: CategoryCatalog, settings: DriftEngine.Settings, store: EventStore?, logger: Logger,
                 thresholdsFile: String? = nil, latency: (@Sendable (Int64) -> Void)? = nil) {
        (alerts, alertSink) = AsyncStream.makeStream(of: [DriftAlert].self)
        self.store = store
        self.logger = logger
        thresholdsInForce = Mutex(AlertThresholds(interestShift: settings.coldStartThreshold,
                                                  churnRisk: settings.coldStartChurnThreshold))
        let thread = Thread { [self, alertSink] in
            var loop = ScoringLoop(catalog: catalog, settings: settings, store: store, logger: logger, alerts: alertSink,
                                   thresholdsFile: thresholdsFile, latency: latency)
            while true {
                let batch = jobs.withLock { queue in
                    defer { queue.removeAll(keepingCapacity: true) }
                    return queue
                }
                if batch.isEmpty {
                    // Queries and models come first: events are scored, and history replayed, a slice
                    // at a time between looks at the queue.
                    if loop.hasEvents {
                        backlog.subtract(loop.scoreSlice(), ordering: .relaxed)
                    } else if loop.isReplaying { loop.replayPage() } else { wake.wait() }
                } else {
                    for job in batch {
                        if case .stop = job {
                            alertSink.finish()
                            return
                        }
                        loop.handle(job)
                    }
                }
                let progress = loop.progress
                reported.withLock { $0 = progress }
            }
        }
        thread.name = "feddrift.scoring"
        thread.stackSize = 8 << 20
        thread.start()
    }

    private func enqueue(_ job: Job) {
        jobs.withLock { $0.append(job) }
        wake.signal()
    }

    /// Installs a new global model (users' states carry over when the shape is unchanged). The first
    /// one starts scoring: events stored before this call are replayed as history (no alerts), events
    /// stored after it are scored live.
    package func install(_ parameters: LSTMParameters<Float>, modelVersion: UInt64) {
        // Taken here, not when the scoring thread gets to the job: an event stored in between is live.
        // One indexed MAX(id) read.
        let storedUpTo: Int64?
        do {
            storedUpTo = try store?.lastEventID()
        } catch {
            logger.warning("Could not read the event store: no history replay for scoring", metadata: ["error": "\(error)"])
            storedUpTo = nil
        }
        enqueue(.model(parameters, version: modelVersion, storedUpTo: storedUpTo))
    }

    /// Applies the aggregator's newest thresholds.
    package func setThresholds(_ thresholds: AlertThresholds) {
        thresholdsInForce.withLock { $0 = thresholds }
        enqueue(.thresholds(thresholds))
    }

    /// Queues stored events for scoring, in order; `ids` are the row ids ``EventStore/append(_:)`` gave them.
    package func submit(_ events: [BehaviorEvent], ids: ClosedRange<Int64>?) {
        guard !events.isEmpty else { return }
        backlog.add(events.count, ordering: .relaxed)
        enqueue(.events(events, ids: ids, live: true))
    }

    /// Queues stored events as history, in order with live ones: their shoppers' states learn from them but no
    /// alert fires and they do not count as scored. For a Kafka partition this shard just took over: what the
    /// group had committed before was scored by the shard that held it.
    package func absorb(_ events: [BehaviorEvent], ids: ClosedRange<Int64>?) {
        guard !events.isEmpty else { return }
        backlog.add(events.count, ordering: .relaxed)
        enqueue(.events(events, ids: ids, live: false))
    }

    /// Drops these shoppers' scoring state (their Kafka partition moved to another shard), after the events
    /// queued before this call.
    package func forget(_ users: Set<UInt64>) {
        guard !users.isEmpty else { return }
        enqueue(.forget(users))
    }

    /// Live events submitted and not scored yet.
    package var backlogEvents: Int { backlog.load(ordering: .relaxed) }

    /// Returns once at most ``maxBacklogEvents`` events wait to be scored (or the task is cancelled),
    /// suspending meanwhile without holding a thread. Ingest calls it before reading its next message, so
    /// a flood faster than scoring (or arriving during a long replay) waits in the producers' queues, at
    /// their high-water marks, instead of in this process's memory.
    package func waitForRoom() async {
        while backlog.load(ordering: .relaxed) > Self.maxBacklogEvents, !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Top-`count` items for `user` over all categories; nil before the user's first scored event or
    /// before any model.
    package func recommend(user: UInt64, count: Int) async -> [DriftAlert.Recommendation]? {
        await withCheckedContinuation { continuation in
            enqueue(.recommend(user: user, count: count) { continuation.resume(returning: $0) })
        }
    }

    /// ``recommend(user:count:)`` for a caller on a thread of its own (tools, tests): blocks that
    /// thread until the scoring thread answers. Never call it from the cooperative pool.
    package func recommendBlocking(user: UInt64, count: Int) -> [DriftAlert.Recommendation]? {
        let answered = DispatchSemaphore(value: 0)
        let result = Mutex<[DriftAlert.Recommendation]?>(nil)
        enqueue(.recommend(user: user, count: count) { items in
            result.withLock { $0 = items }
            answered.signal()
        })
        answered.wait()
        return result.withLock { $0 }
    }

    /// The alert thresholds scoring applies (the aggregator's newest, or the cold-start values).
    package var thresholds: AlertThresholds { thresholdsInForce.withLock { $0 } }

    /// The scoring thread's last report.
    package var progress: Progress { reported.withLock { $0 } }

    /// Stops the thread after the jobs queued so far; ``alerts`` then finishes.
    package func stop() { enqueue(.stop) }

    /// The state that only the scoring thread touches.
    private struct ScoringLoop {
        let catalog: CategoryCatalog
        let settings: DriftEngine.Settings
        let store: EventStore?
        let logger: Logger
        let alerts: AsyncStream<[DriftAlert]>.Continuation
        var engine: DriftEngine?
        var thresholds: AlertThresholds?
        /// The replay in progress: where the next page starts (nil: the first page), the last row id it reads.
        var replay: (after: Int64?, upTo: Int64, started: ContinuousClock.Instant)?
        /// Live events waiting to be scored (during a replay: until it is over), with their row ids.
        var held: [(events: [BehaviorEvent], ids: ClosedRange<Int64>?, live: Bool)] = []
        /// The first event of `held[0]` not yet scored.
        var heldOffset = 0
        /// The last row id the replay read: a live event with an id at or below it was scored by the replay.
        var replayedUpTo: Int64 = 0
        /// Shoppers to forget once the held events queued before the request are scored.
        var pendingForget: [Set<UInt64>] = []

        let thresholdsFile: String?
        let latency: (@Sendable (Int64) -> Void)?

        init(catalog: CategoryCatalog, settings: DriftEngine.Settings, store: EventStore?, logger: Logger,
             alerts: AsyncStream<[DriftAlert]>.Continuation, thresholdsFile: String?, latency: (@Sendable (Int64) -> Void)?) {
            self.thresholdsFile = thresholdsFile
            self.latency = latency
            self.catalog = catalog
            self.settings = settings
            self.store = store
            self.logger = logger
            self.alerts = alerts
        }

        var isReplaying: Bool { replay != nil }

        /// Whether live events wait and may be scored now (not during a replay).
        var hasEvents: Bool { !held.isEmpty && !isReplaying }

        /// Scores up to ``LiveScoring/sliceEvents`` waiting events, in order; returns how many it took.
        mutating func scoreSlice() -> Int {
            var budget = LiveScoring.sliceEvents
            while budget > 0, !held.isEmpty {
                let (events, ids, live) = held[0]
                let end = min(events.count, heldOffset + budget)
                score(events[heldOffset..<end], ids: ids, live: live)
                budget -= end - heldOffset
                if end == events.count {
                    held.removeFirst()
                    heldOffset = 0
                } else {
                    heldOffset = end
                }
            }
            return LiveScoring.sliceEvents - budget
        }

        var progress: Progress {
            Progress(eventsScored: engine?.eventsScored ?? 0, users: engine?.userCount ?? 0, replaying: isReplaying,
                     modelVersion: engine?.modelVersion)
        }

        mutating func handle(_ job: Job) {
            switch job {
            case let .model(parameters, version, storedUpTo):
                guard parameters.shape.categories == catalog.categories else {
                    logger.warning("Model does not fit the catalog; not used for scoring", metadata: [
                        "model.categories": "\(parameters.shape.categories)", "catalog.categories": "\(catalog.categories)",
                    ])
                    return
                }
                if let engine {
                    engine.update(parameters: parameters, modelVersion: version)
                    return
                }
                let created = DriftEngine(parameters: parameters, modelVersion: version, catalog: catalog, settings: settings)
                if let thresholds {
                    created.threshold = thresholds.interestShift
                    created.churnThreshold = thresholds.churnRisk
                }
                engine = created
                if let storedUpTo { startReplay(upTo: storedUpTo) }
            case let .thresholds(value):
                thresholds = value
                engine?.threshold = value.interestShift
                engine?.churnThreshold = value.churnRisk
                if let thresholdsFile { AlertThresholdsFile.write(value, to: thresholdsFile, logger: logger) }
            case let .events(events, ids, live):
                held.append((events, ids, live))
            case let .forget(users):
                // In order: events queued before this are scored or held first.
                if held.isEmpty { engine?.forget(users) } else { held.append(([], nil, false)); pendingForget.append(users) }
            case let .recommend(user, count, reply):
                guard let engine, engine.knows(user) else { return reply(nil) }
                reply(engine.recommend(user: user, count: count))
            case .stop:
                break
            }
        }

        private mutating func startReplay(upTo: Int64) {
            replay = (nil, upTo, .now)
            replayedUpTo = upTo
        }

        /// Replays one page of users' recent history into the engine; after the last, scores the held events.
        mutating func replayPage() {
            guard let current = replay, let engine, let store else { return }
            do {
                let next = try store.forEachRecentSequence(
                    limit: LiveScoring.replayEvents, after: current.after, users: LiveScoring.replayPageUsers,
                    upTo: current.upTo) { _, events in events.forEach(engine.warm) }
                if let next {
                    replay?.after = next
                    return
                }
                logger.info("Live scoring ready: users' recent history replayed", metadata: [
                    "users": "\(engine.userCount)", "seconds": "\((ContinuousClock.now - current.started).inSeconds)",
                    "events.held": "\(held.reduce(0) { $0 + $1.0.count })",
                ])
            } catch {
                logger.warning("Could not replay history for scoring", metadata: ["error": "\(error)"])
            }
            replay = nil  // the held events are scored next, a slice at a time
        }

        /// Scores `events` (a slice of their batch, indexed as in it), skipping those the replay already read
        /// (row id ≤ ``replayedUpTo``).
        private mutating func score(_ events: ArraySlice<BehaviorEvent>, ids: ClosedRange<Int64>?, live: Bool) {
            if events.isEmpty, !live, !pendingForget.isEmpty {
                // The marker ``handle(_:)`` queued for a forget behind held events.
                engine?.forget(pendingForget.removeFirst())
                return
            }
            guard let engine else { return }
            var raised: [DriftAlert] = []
            for (index, event) in zip(events.indices, events) {
                if let ids, ids.lowerBound + Int64(index) <= replayedUpTo { continue }
                guard live else {
                    engine.warm(event)
                    continue
                }
                let started = latency == nil ? nil : ContinuousClock.now
                raised += engine.advanceClock(to: event.timestamp)
                if let alert = engine.process(event) { raised.append(alert) }
                if let started, let latency {
                    let elapsed = (ContinuousClock.now - started).components
                    latency(elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
                }
            }
            if !raised.isEmpty { alerts.yield(raised) }
        }
    }
}

/// `data_directory/thresholds.json`: the thresholds the agent's scoring applies, as the aggregator last
/// sent them, for operators and `edge-agent alerts`.
package enum AlertThresholdsFile {
    private struct Document: Codable {
        var interestShift: Double
        var churnRisk: Double
        var updated: Int64
        enum CodingKeys: String, CodingKey {
            case interestShift = "interest_shift", churnRisk = "churn_risk", updated
        }
    }

    static func write(_ thresholds: AlertThresholds, to path: String, logger: Logger) {
        let document = Document(interestShift: thresholds.interestShift, churnRisk: thresholds.churnRisk,
                                updated: Int64(Date().timeIntervalSince1970))
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(document).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            logger.warning("Could not write the thresholds file", metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }

    /// The thresholds last written and when (unix seconds); nil when there is no readable file.
    package static func read(_ path: String) -> (thresholds: AlertThresholds, updated: Int64)? {
        guard let data = FileManager.default.contents(atPath: path),
              let document = try? JSONDecoder().decode(Document.self, from: data) else { return nil }
        return (AlertThresholds(interestShift: document.interestShift, churnRisk: document.churnRisk), document.updated)
    }
}
