import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Logging
import ServiceLifecycle

/// Live events on a PULL socket: each message holds one or more rows (newline-separated) in the
/// configured format. A message's valid rows are stored in one durable transaction before the next
/// message is read; bad rows are counted and logged with their position, never silently dropped. Stored
/// events are then scored for interest drift; alerts are persisted, then published.
struct IngestService: Service {
    let channel: ZMQChannel
    let store: EventStore
    let format: EventFormat
    let scoring: DriftScoring
    let publisher: AlertPublisher
    let logger: Logger

    func run() async throws {
        defer { channel.close() }
        var stored = 0, refused = 0, messages = 0
        for try await message in channel.messages.cancelOnGracefulShutdown() {
            messages += 1
            var events: [BehaviorEvent] = []
            for frame in message.frames {
                let text = String(decoding: frame, as: UTF8.self)
                for (index, row) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
                    do {
                        events.append(try EventParser.parse(row, format: format, line: index + 1))
                    } catch {
                        refused += 1
                        logger.warning("Refused live event", metadata: ["message": "\(messages)", "error": "\(error)"])
                    }
                }
            }
            try store.append(events)
            stored += events.count
            for alert in scoring.process(events) {
                do {
                    try await publisher.publish(alert)
                    logger.notice("Interest shift", metadata: [
                        "alert.id": "\(alert.id)", "user": "\(alert.user)", "score": "\(alert.score)",
                        "emerging": "\(alert.emerging.map(\.category))", "fading": "\(alert.fading.map(\.category))",
                        "recommendations": "\(alert.recommendations.map(\.item))",
                    ])
                } catch {
                    logger.error("Could not publish alert (it stays stored and goes out at the next start)",
                                 metadata: ["alert.id": "\(alert.id)", "error": "\(error)"])
                }
            }
            if messages % 1000 == 0 {
                logger.info("Live ingest", metadata: ["events.stored": "\(stored)", "events.refused": "\(refused)"])
            }
        }
        logger.info("Live ingest stopped", metadata: ["events.stored": "\(stored)", "events.refused": "\(refused)"])
    }
}
