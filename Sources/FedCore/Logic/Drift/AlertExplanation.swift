import Foundation

/// An alert's reason in words a merchandiser reads: what happened to the shopper, the categories and
/// their shares before and after, how much evidence it took, the score against the threshold, and what
/// to offer. Categories are the platform's ids (the agent holds no names).
package enum AlertExplanation {
    package static func text(_ alert: DriftAlert) -> String {
        let offer = alert.recommendations.isEmpty
            ? "No item to recommend yet (no regional popularity in those categories)."
            : "Recommended: \(alert.recommendations.count) popular item\(alert.recommendations.count == 1 ? "" : "s") "
                + "from \(categories(Set(alert.recommendations.map(\.category)).count))."
        let against = String(format: "score %.2f against the threshold %.2f", alert.score, alert.threshold)
        switch alert.kind {
        case .interestShift:
            let after = alert.events.map { "after \($0) event\($0 == 1 ? "" : "s") of the new pattern" }
                ?? "over the shopper's recent events"
            let emerging = alert.emerging.isEmpty ? "categories new to them"
                : list(alert.emerging.map { "category \($0.category) (\(percent($0.before)) → \(percent($0.after)))" })
            let fading = alert.fading.isEmpty ? ""
                : ", away from " + list(alert.fading.map { "category \($0.category) (\(percent($0.before)) → \(percent($0.after)))" })
            return "Interest shift, \(after): the shopper moved to \(emerging)\(fading) "
                + "(share of long-run activity → share of recent category changes); \(against). \(offer)"
        case .churnRisk:
            let silence = alert.silenceDays.map { String(format: "%.1f days", $0) } ?? "a long time"
            let usual = alert.usualSessionsPerDay.map { String(format: "%.1f sessions a day", $0) } ?? "their usual visits"
            // e^(−score) is about how often per day a silence this long happens to this shopper.
            let rarity = exp(alert.score) >= 1e6 ? "less than once in a million days"
                : String(format: "about once in %.0f days", max(1, exp(alert.score)))
            let interests = alert.fading.isEmpty ? ""
                : " Their main interests were " + list(alert.fading.map { "category \($0.category) (\(percent($0.before)))" }) + "."
            return "Churn risk: silent for \(silence) after \(usual); for them a silence this long comes \(rarity) "
                + "(\(against)).\(interests) \(offer)"
        }
    }

    private static func percent(_ share: Double) -> String { String(format: "%.0f%%", 100 * share) }

    private static func categories(_ count: Int) -> String { count == 1 ? "that category" : "\(count) categories" }

    private static func list(_ items: [String]) -> String {
        switch items.count {
        case 0: ""
        case 1: items[0]
        default: items.dropLast().joined(separator: ", ") + " and " + (items.last ?? "")
        }
    }
}
