import FedCore
import Logging
import ServiceLifecycle

/// Live events on a PULL socket: each message holds one or more rows (newline-separated) in the
/// configured format. A message's valid rows are stored in one durable transaction before the next
/// message is read; bad rows are counted and logged with their position, never silently dropped.
struct IngestService: Service {
    let channel: ZMQChannel
    let store: EventStore
    let format: EventFormat
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
            if messages % 1000 == 0 {
                logger.info("Live ingest", metadata: ["events.stored": "\(stored)", "events.refused": "\(refused)"])
            }
        }
        logger.info("Live ingest stopped", metadata: ["events.stored": "\(stored)", "events.refused": "\(refused)"])
    }
}
