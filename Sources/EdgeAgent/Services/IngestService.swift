import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Logging
import ServiceLifecycle
import Synchronization

/// Events stored and refused by live ingest since start, for `/status`.
final class IngestCounts: Sendable {
    private let counts = Mutex((stored: 0, refused: 0, duplicates: 0))
    func add(stored: Int, refused: Int, duplicates: Int = 0) {
        counts.withLock { $0.stored += stored; $0.refused += refused; $0.duplicates += duplicates }
    }
    var values: (stored: Int, refused: Int, duplicates: Int) { counts.withLock { $0 } }
}

/// Live events on a PULL socket: each message holds one or more rows (newline-separated) in the
/// configured format, optionally after a `#stream <name> <offset>` frame (``IngestStreamHeader``) that
/// makes re-sent rows count once. A message's valid rows are stored in one durable transaction before the next
/// message is read; bad rows are counted (`/metrics`, `/status`) and logged with their position, never
/// silently dropped — at most one line a second, with how many were not logged since, so that a flood
/// of bad rows cannot flood the log. Stored events are then queued for scoring (``LiveScoring``); the loop
/// reads on only while fewer than ``LiveScoring/maxBacklogEvents`` wait there, so a flood waits in the
/// producers' queues, not in memory.
struct IngestService: Service {
    let channel: ZMQChannel
    let store: EventStore
    let format: EventFormat
    let scoring: LiveScoring
    let metrics: AgentMetrics
    let counts: IngestCounts
    let logger: Logger

    func run() async throws {
        defer { channel.close() }
        var stored = 0, refused = 0, duplicates = 0, messages = 0
        var throttle = LogThrottle(every: .seconds(1))
        func warn(_ error: any Error) {
            guard let notLogged = throttle.due() else { return }
            logger.warning("Refused live event", metadata: [
                "message": "\(messages)", "error": "\(error)", "refused.not_logged_since_last_line": "\(notLogged)",
            ])
        }
        for try await message in channel.messages.cancelOnGracefulShutdown() {
            messages += 1
            // Scoring behind by more than its backlog: stop reading until it catches up (producers wait).
            await scoring.waitForRoom()
            let started = ContinuousClock.now, refusedBefore = refused
            var frames = message.frames[...]
            var header: IngestStreamHeader?
            if let first = frames.first, IngestStreamHeader.isHeader(first) {
                do {
                    header = try IngestStreamHeader.parse(first)
                    frames = frames.dropFirst()
                } catch {
                    // A malformed header: storing its rows could store them twice; refuse the message whole.
                    refused += 1
                    warn(error)
                    metrics.ingested(stored: 0, refused: 1)
                    counts.add(stored: 0, refused: 1)
                    continue
                }
            }
            var events: [(row: Int, event: BehaviorEvent)] = [], row = 0
            for frame in frames {
                let text = String(decoding: frame, as: UTF8.self)
                for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
                    defer { row += 1 }
                    do {
                        events.append((row, try EventParser.parse(line, format: format, line: row + 1)))
                    } catch {
                        refused += 1
                        warn(error)
                    }
                }
            }
            let fresh: [BehaviorEvent], ids: ClosedRange<Int64>?, skipped: Int
            if let header {
                let position = EventStore.StreamPosition(producer: message.userID ?? "", stream: header.stream,
                                                         first: header.offset)
                let outcome = try store.append(events, at: position, rows: row)
                (ids, skipped) = (outcome.ids, outcome.skippedRows)
                fresh = events.filter { $0.row >= outcome.skippedRows }.map(\.event)  // what the store kept
            } else {
                fresh = events.map(\.event)
                (ids, skipped) = (try store.append(fresh), 0)
            }
            Failpoint.agentIngestStored.reach()
            stored += fresh.count
            duplicates += skipped
            metrics.ingested(stored: fresh.count, refused: refused - refusedBefore)
            counts.add(stored: fresh.count, refused: refused - refusedBefore, duplicates: skipped)
            metrics.ingestDuration(seconds: (ContinuousClock.now - started).inSeconds)
            scoring.submit(fresh, ids: ids)
            if messages % 1000 == 0 {
                logger.info("Live ingest", metadata: [
                    "events.stored": "\(stored)", "events.refused": "\(refused)", "rows.already_stored": "\(duplicates)",
                ])
            }
        }
        logger.info("Live ingest stopped", metadata: [
            "events.stored": "\(stored)", "events.refused": "\(refused)", "rows.already_stored": "\(duplicates)",
        ])
    }
}

/// Events from a Kafka topic, this agent one shard of the region's consumer group (``KafkaIngest``). On graceful
/// shutdown it finishes its batch, commits, and leaves the group so that its partitions move on at once.
struct KafkaIngestService: Service {
    let settings: KafkaIngest.Settings
    let store: EventStore
    let scoring: LiveScoring
    let metrics: AgentMetrics
    let counts: IngestCounts
    let logger: Logger

    func run() async throws {
        let totals = Mutex((stored: 0, refused: 0, history: 0, batches: 0))
        let ingest = KafkaIngest(settings: settings, store: store, scoring: scoring, logger: logger) { [metrics, counts, logger] batch in
            metrics.ingested(stored: batch.stored, refused: batch.refused)
            metrics.ingestDuration(seconds: batch.seconds)
            counts.add(stored: batch.stored, refused: batch.refused, duplicates: batch.alreadyStored)
            let total = totals.withLock { total in
                total.stored += batch.stored
                total.refused += batch.refused
                total.history += batch.history
                total.batches += 1
                return total
            }
            if total.batches % 100 == 0 {
                logger.info("Kafka ingest", metadata: [
                    "events.stored": "\(total.stored)", "events.history": "\(total.history)", "events.refused": "\(total.refused)",
                ])
            }
        }
        try await withGracefulShutdownHandler {
            try await ingest.finish()
        } onGracefulShutdown: {
            ingest.stop()
        }
        let total = totals.withLock { $0 }
        logger.info("Kafka ingest stopped", metadata: [
            "events.stored": "\(total.stored)", "events.history": "\(total.history)", "events.refused": "\(total.refused)",
        ])
    }
}

/// Alerts from the scoring thread: each batch is stored in one durable transaction, then published (PUB,
/// JSONL) and marked published in one more (``AlertPublisher``). First in the group, so shut down last:
/// then it stops the scoring thread and publishes what it raised until then.
struct AlertService: Service {
    let scoring: LiveScoring
    let publisher: AlertPublisher
    let metrics: AgentMetrics
    let logger: Logger

    func run() async throws {
        try await withGracefulShutdownHandler {
            try await publishAll()
        } onGracefulShutdown: {
            scoring.stop()
        }
    }

    private func publishAll() async throws {
        for await batch in scoring.alerts {
            do {
                try await publisher.publish(batch)
            } catch {
                logger.error("Could not publish alerts (stored ones go out at the next start)",
                             metadata: ["alerts": "\(batch.count)", "error": "\(error)"])
                continue
            }
            // One line per alert at info level (a busy region raises hundreds a day; they are stored,
            // published and counted in /metrics), named by its kind; alert ids, never shopper ids.
            for alert in batch {
                metrics.alert(kind: alert.kind.rawValue)
                logger.info(alert.kind == .interestShift ? "Interest shift" : "Churn risk", metadata: [
                    "alert.id": "\(alert.id)", "alert.kind": "\(alert.kind.rawValue)", "score": "\(alert.score)",
                    "emerging": "\(alert.emerging.map(\.category))", "fading": "\(alert.fading.map(\.category))",
                    "recommendations": "\(alert.recommendations.map(\.item))",
                ])
            }
        }
    }
}
