import FedIO
import FedLogic
import FedModel
package import FedNode
import Foundation

extension ShopperSimulator.Output {
    /// The statistics the simulator's defaults are fitted to, measured on this output.
    package var summary: String {
        let users = Dictionary(grouping: events, by: \.user)
        var categories: [Int] = [], same = 0, pairs = 0, sessions = 0
        for list in users.values {
            categories.append(Set(list.map(\.category)).count)
            sessions += 1
            for (a, b) in zip(list, list.dropFirst()) {
                pairs += 1
                same += a.category == b.category ? 1 : 0
                if b.timestamp - a.timestamp > 1_800 { sessions += 1 }
            }
        }
        let total = Double(max(events.count, 1))
        func share(_ action: BehaviorEvent.Action) -> String {
            String(format: "%.1f%%", 100 * Double(events.filter { $0.action == action }.count) / total)
        }
        let median = categories.sorted()[categories.count / 2]
        return """
            \(events.count) events from \(users.count) shoppers, \(shifts.filter { $0.kind == .interestShift }.count) with an injected interest shift, \(shifts.filter { $0.kind == .disengagement }.count) disengaging
              actions: view \(share(.view)), cart \(share(.cart)), favourite \(share(.favourite)), purchase \(share(.purchase))
              distinct categories per shopper (median): \(median)
              P(next event in the same category): \(String(format: "%.2f", Double(same) / Double(max(pairs, 1))))
              events per session (30-minute gap): \(String(format: "%.1f", total / Double(max(sessions, 1))))
            """
    }

    /// The ground truth as JSON lines: one object per shift.
    package func groundTruthJSONLines() throws -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = .sortedKeys
        return try shifts.map { String(decoding: try encoder.encode($0), as: UTF8.self) }.joined(separator: "\n") + "\n"
    }

    /// The events as Taobao UserBehavior CSV.
    ///
    /// - Parameter progress: counts the events formatted, in a phase named `label`.
    package func taobaoCSV(progress: ProgressReporter = .silent, label: String = "formatting events") -> String {
        var text = ""
        text.reserveCapacity(events.count * 40)
        progress.begin(label, total: events.count, unit: "events")
        for (index, event) in events.enumerated() {
            text += event.taobaoRow + "\n"
            if index % 10_000 == 9_999 { progress.advance(by: 10_000) }
        }
        progress.set(events.count)
        progress.finish()
        return text
    }
}
