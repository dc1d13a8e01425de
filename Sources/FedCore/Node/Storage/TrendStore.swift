package import FedLogic
import Foundation
internal import GRDB

/// The aggregator's demand-trend warnings, durable, with their deliveries to the configured sinks
/// (``AlertDelivery`` works from it as from an agent's ``AlertStore``): each warning is written with its
/// deliveries in one transaction, so none is lost across a crash.
package final class TrendStore: DeliveryTableOutbox {
    package let path: String
    private let queue: DatabaseQueue
    var deliveries: DeliveryTable { DeliveryTable(items: "warning", path: path) }
    var database: DatabaseQueue { queue }

    package init(path: String) throws(StorageError) {
        self.path = path
        queue = try DatabaseQueue.durable(path: path, what: "trend store") { migrator in
            migrator.registerMigration("v1: warnings and deliveries") { db in
                try db.create(table: "warning") { table in
                    table.autoIncrementedPrimaryKey("sequence")
                    table.column("id", .text).notNull().unique()
                    table.column("round", .integer).notNull()
                    table.column("json", .text).notNull()
                }
                try DeliveryTable.create(db, items: "warning")
            }
        }
    }

    /// The warning as sinks receive it (docs/ALERTS.md): its id (stable: round, region, category,
    /// direction), `kind` (`demand_surge` or `demand_collapse`), the round and the detector's figures.
    package struct Document: Codable, Sendable, Equatable {
        package var id: String
        package var kind: String
        package var round: UInt64
        package var categoryIndex: UInt64
        /// The platform's category id (the aggregator's `catalog`); absent without one.
        package var categoryID: UInt64?
        package var region: String
        package var change: Double
        package var confidence: Double
        package var zScore: Double
        package var observed: Double
        package var expected: Double

        package init(_ warning: DemandTrendWarning, round: UInt64) {
            kind = "demand_" + warning.direction.rawValue
            id = "trend-\(round)-\(warning.region)-\(warning.category)-\(warning.direction.rawValue)"
            (self.round, categoryIndex, categoryID, region) = (round, warning.category, warning.categoryID, warning.region)
            (change, confidence, zScore, observed, expected) = (warning.change, warning.confidence, warning.zScore,
                                                              warning.observed, warning.expected)
        }

        enum CodingKeys: String, CodingKey {
            case id, kind, round, region, change, confidence, observed, expected
            case categoryIndex = "category_index", zScore = "z_score", categoryID = "category_id"
        }

        /// What a person reads.
        var text: String {
            let place = region == DemandTrendDetector.allRegions ? "all regions together" : "region \(region)"
            let name = categoryID.map { "category \($0) (model #\(categoryIndex))" } ?? "model category #\(categoryIndex)"
            return "Demand \(kind == "demand_surge" ? "surge" : "collapse") for \(name) in \(place) "
                + "(warning \(id)).\nIts share of active shoppers moved " + String(format: "%+.0f%%", change * 100)
                + " against its own history in round \(round): " + String(format: "%.0f shoppers expected, %.0f seen", expected, observed)
                + String(format: " (confidence %.4f; counts noised by the regions' releases).", confidence)
                + (categoryID == nil
                    ? "\nThe catalog (aggregator catalog build; `catalog:` in the aggregator's configuration names it here) says which platform category model index \(categoryIndex) is."
                    : "")
        }
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    /// Stores round `round`'s warnings with a pending delivery for each sink `routes` names for its kind,
    /// in one transaction (idempotent by id).
    package func record(_ warnings: [DemandTrendWarning], round: UInt64,
                        routes: (String) -> [(sink: String, due: Double)]) throws(StorageError) {
        guard !warnings.isEmpty else { return }
        let documents = warnings.map { Document($0, round: round) }
        do {
            let json = try documents.map { String(decoding: try Self.encoder.encode($0), as: UTF8.self) }
            try queue.write { db in
                for (document, text) in zip(documents, json) {
                    try db.execute(sql: "INSERT OR IGNORE INTO warning (id, round, json) VALUES (?, ?, ?)",
                                   arguments: [document.id, Int64(round), text])
                    try DeliveryTable.insert(db, id: document.id, routes: routes(document.kind))
                }
            }
        } catch {
            throw StorageError(path: path, operation: "record \(warnings.count) trend warnings", reason: "\(error)")
        }
    }

    package func due(sink: String, now: Double, limit: Int) throws(StorageError) -> [OutboxItem] {
        var items: [OutboxItem] = []
        for row in try deliveries.due(queue, sink: sink, now: now, limit: limit) {
            guard let document = try? JSONDecoder().decode(Document.self, from: Data(row.json.utf8)) else {
                throw StorageError(path: path, operation: "read trend warning #\(row.sequence)",
                                   reason: "stored JSON does not decode; the file was changed outside FedDrift")
            }
            let place = document.region == DemandTrendDetector.allRegions ? "all regions" : document.region
            items.append(OutboxItem(id: document.id, kind: document.kind, json: row.json,
                                    subject: "[FedDrift] Demand \(document.kind == "demand_surge" ? "surge" : "collapse"): "
                                        + "model category #\(document.categoryIndex) in \(place) "
                                        + String(format: "(%+.0f%%)", document.change * 100),
                                    text: document.text, attempts: row.attempts))
        }
        return items
    }


    /// Kinds a trend sink may choose.
    package static let kinds = ["demand_surge", "demand_collapse"]
}
