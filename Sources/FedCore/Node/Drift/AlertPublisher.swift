package import FedIO
package import FedLogic
import FedModel
import Foundation

/// Persist, then publish: every alert is committed to the ``AlertStore`` first, then sent on the
/// agent's PUB socket (topic `alert.<region>.<kind>`, body: the alert as JSON) and appended to a JSONL
/// file, and only then marked published. After a crash, ``republishPending()`` sends the unconfirmed
/// ones again with the same ids.
package final class AlertPublisher: Sendable {
    private let store: AlertStore
    private let channel: ZMQChannel?
    private let file: String?
    private let delivery: AlertDelivery?
    /// SQLite commits and JSONL appends, off the cooperative pool and in order.
    private let disk = BlockingQueue(label: "feddrift.alerts")

    package init(store: AlertStore, channel: ZMQChannel?, file: String?, delivery: AlertDelivery? = nil) {
        self.store = store
        self.channel = channel
        self.file = file
        self.delivery = delivery
    }

    package static func topic(_ alert: DriftAlert) -> String { "alert.\(alert.region).\(alert.kind.rawValue)" }

    /// Stores `alerts` in one transaction, with their deliveries to the configured sinks (the outbox
    /// ``AlertDelivery`` works from), then sends them and marks them published in one more. The SQLite
    /// and file writes wait for the disk, so they run off the cooperative pool.
    package func publish(_ alerts: [DriftAlert]) async throws {
        let store = self.store
        let routes = delivery?.routes(now: Date().timeIntervalSince1970)
        let documents = try await disk.run { try store.record(alerts, routes: routes ?? { _ in [] }) }
        try await send(alerts, documents: documents)
    }

    /// Publishes the alerts that were stored but not confirmed (e.g. before a crash); returns how many.
    @discardableResult
    package func republishPending() async throws -> Int {
        let pending = try store.unpublished()
        var documents: [String] = []
        for alert in pending { documents.append(try store.json(alert)) }
        // A crash between the file append and the mark leaves them in the file already: not twice.
        let written = file.map { Self.alertIDs(inTailOf: $0, bytes: documents.reduce(64 << 10) { $0 + 2 * $1.utf8.count }) } ?? []
        try await send(pending, documents: documents, inFile: written)
        return pending.count
    }

    /// The ids of the alerts in the last `bytes` bytes of a JSONL file (whole lines only).
    static func alertIDs(inTailOf path: String, bytes: Int) -> Set<String> {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        guard let size = try? handle.seekToEnd() else { return [] }
        let start = size > UInt64(bytes) ? size - UInt64(bytes) : 0
        guard (try? handle.seek(toOffset: start)) != nil, let data = try? handle.readToEnd() else { return [] }
        var lines = data.split(separator: UInt8(ascii: "\n"))
        if start > 0, !lines.isEmpty { lines.removeFirst() }  // a partial line
        var ids: Set<String> = []
        for line in lines {
            if let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any], let id = object["id"] as? String {
                ids.insert(id)
            }
        }
        return ids
    }

    private func send(_ alerts: [DriftAlert], documents: [String], inFile: Set<String> = []) async throws {
        guard !alerts.isEmpty else { return }
        if let channel {
            for (alert, json) in zip(alerts, documents) {
                try await channel.send([Array(Self.topic(alert).utf8), Array(json.utf8)])
            }
        }
        try await disk.run { [self] in try confirm(alerts, documents: documents, inFile: inFile) }
    }

    /// Appends the JSONL lines (but those of alerts `inFile` already), then marks the alerts published.
    private func confirm(_ alerts: [DriftAlert], documents: [String], inFile: Set<String>) throws {
        if let file {
            let lines = Data(zip(alerts, documents).filter { !inFile.contains($0.0.id) }.map { $0.1 + "\n" }.joined().utf8)
            if let handle = FileHandle(forWritingAtPath: file) {
                defer { try? handle.close() }
                try handle.seekToEnd()
                try handle.write(contentsOf: lines)
            } else {
                try lines.write(to: URL(fileURLWithPath: file))
            }
        }
        Failpoint.agentAlertsPublished.reach()
        try store.markPublished(alerts.map(\.id))
    }
}
