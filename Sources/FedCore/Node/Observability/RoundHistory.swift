package import FedLogic
package import Foundation
import Synchronization

/// One closed round as the dashboard plots it: a line of `state_directory/history.jsonl`.
package struct RoundHistoryEntry: Codable, Sendable, Equatable {
    /// Unix seconds when the round's status was written.
    package var time: Double
    package var round: UInt64
    package var aggregated: Bool
    package var secureAggregation: Bool
    package var acceptedAgents: Int
    package var liveAgents: Int
    package var enrolledAgents: Int
    package var seconds: Double
    package var modelVersion: UInt64
    /// Held-out evaluation of model `evaluatedModelVersion` (DP-noised when the agents are private).
    package var evaluatedModelVersion: UInt64
    package var evaluatedUsers: Int
    package var top1: Double
    package var top10: Double
    /// Thresholds in force after the round, and the alert rates the agents' DP releases showed.
    package var interestShiftThreshold: Double?
    package var churnRiskThreshold: Double?
    package var alertsPer10kEvents: Double?
    package var churnPer1kShopperDays: Double?
    /// ε spent per agent, as its newest verified ledger receipt showed.
    package var epsilonSpent: [String: Double]
    /// Regions whose demand counts the round carried, and the demand-trend warnings (absent in older lines).
    package var demandRegions: Int?
    package var demandTrends: [DemandTrendWarning]?

    enum CodingKeys: String, CodingKey {
        case time, round, aggregated, seconds, top1, top10
        case secureAggregation = "secure_aggregation", acceptedAgents = "accepted_agents", liveAgents = "live_agents"
        case enrolledAgents = "enrolled_agents", modelVersion = "model_version"
        case evaluatedModelVersion = "evaluated_model_version", evaluatedUsers = "evaluated_users"
        case interestShiftThreshold = "interest_shift_threshold", churnRiskThreshold = "churn_risk_threshold"
        case alertsPer10kEvents = "alerts_per_10k_events", churnPer1kShopperDays = "churn_per_1k_shopper_days"
        case epsilonSpent = "epsilon_spent", demandRegions = "demand_regions", demandTrends = "demand_trends"
    }
}

/// The rounds the dashboard shows: appended to `history.jsonl` (one JSON line per round, kept across
/// restarts) and the newest `capacity` of them held in memory.
package final class RoundHistory: Sendable {
    package let path: String
    private let capacity: Int
    private let entries: Mutex<[RoundHistoryEntry]>

    /// Loads the newest `capacity` rounds of `path`; lines that do not decode (a torn last line after a
    /// crash) are skipped and counted in ``skippedLines``.
    package init(path: String, capacity: Int = 500) {
        self.path = path
        self.capacity = capacity
        var loaded: [RoundHistoryEntry] = []
        var skipped = 0
        if let data = FileManager.default.contents(atPath: path) {
            let decoder = JSONDecoder()
            for line in data.split(separator: UInt8(ascii: "\n")) {
                if let entry = try? decoder.decode(RoundHistoryEntry.self, from: Data(line)) {
                    loaded.append(entry)
                } else {
                    skipped += 1
                }
            }
        }
        entries = Mutex(Array(loaded.suffix(capacity)))
        skippedLines = skipped
        // A crash mid-append leaves a last line without its newline: end it, so the next round's line is
        // not glued to the fragment (the fragment itself was skipped above).
        if let handle = FileHandle(forUpdatingAtPath: path) {
            defer { try? handle.close() }
            if let end = try? handle.seekToEnd(), end > 0 {
                try? handle.seek(toOffset: end - 1)
                if let last = try? handle.read(upToCount: 1), last != Data("\n".utf8) {
                    _ = try? handle.seekToEnd()
                    try? handle.write(contentsOf: Data("\n".utf8))
                }
            }
        }
    }

    package let skippedLines: Int

    /// Appends `entry` to the file and to memory. Blocking file I/O: call it off the cooperative pool.
    package func append(_ entry: RoundHistoryEntry) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let line = try encoder.encode(entry) + Data("\n".utf8)
        if let handle = FileHandle(forWritingAtPath: path) {
            defer { try? handle.close() }
            try handle.seekToEnd()
            try handle.write(contentsOf: line)
        } else {
            try line.write(to: URL(fileURLWithPath: path))
        }
        entries.withLock { entries in
            entries.append(entry)
            if entries.count > capacity { entries.removeFirst(entries.count - capacity) }
        }
    }

    package var recent: [RoundHistoryEntry] { entries.withLock { $0 } }
}
