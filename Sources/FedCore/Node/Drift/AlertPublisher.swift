package import FedIO
package import FedLogic
package import FedModel
import Foundation

/// Persist, then publish: every alert is committed to the ``AlertStore`` first, then sent on the
/// agent's PUB socket (topic `alert.<region>.<kind>`, body: the alert as JSON) and appended to a JSONL
/// file, and only then marked published. After a crash, ``republishPending()`` sends the unconfirmed
/// ones again with the same ids.
package final class AlertPublisher: Sendable {
    private let store: AlertStore
    private let channel: ZMQChannel?
    private let file: String?

    package init(store: AlertStore, channel: ZMQChannel?, file: String?) {
        self.store = store
        self.channel = channel
        self.file = file
    }

    package static func topic(_ alert: DriftAlert) -> String { "alert.\(alert.region).\(alert.kind)" }

    package func publish(_ alert: DriftAlert) async throws {
        let json = try store.record(alert)
        try await send(alert, json: json)
    }

    /// Publishes the alerts that were stored but not confirmed (e.g. before a crash); returns how many.
    @discardableResult
    package func republishPending() async throws -> Int {
        let pending = try store.unpublished()
        for alert in pending { try await send(alert, json: AlertStore.json(alert)) }
        return pending.count
    }

    private func send(_ alert: DriftAlert, json: String) async throws {
        if let channel { try await channel.send([Array(Self.topic(alert).utf8), Array(json.utf8)]) }
        if let file {
            let line = Data((json + "\n").utf8)
            if let handle = FileHandle(forWritingAtPath: file) {
                defer { try? handle.close() }
                try handle.seekToEnd()
                try handle.write(contentsOf: line)
            } else {
                try line.write(to: URL(fileURLWithPath: file))
            }
        }
        try store.markPublished(alert.id)
    }
}
