package import FedLogic
import Foundation

/// How the alerts an agent raised compare with the simulator's ground truth (the demo's figures).
///
/// An alert is **true** when its shopper had an injected change of the matching kind (an interest
/// shift for `interest_shift`, a disengagement for `churn_risk`) at most `matchDays` before it and not
/// after it. A change is **live** when it happened at or after `liveFrom` (while events streamed in),
/// and **caught** when a true alert followed it. Delay: for an interest shift, the shopper's events
/// from the change up to and including the one that raised the first true alert; for a disengagement,
/// the hours from the change to the first warning.
package struct AlertScoring: Sendable, Codable, Equatable {
    package struct Kind: Sendable, Codable, Equatable {
        package var alerts = 0
        package var trueAlerts = 0
        package var changesLive = 0
        package var changesCaught = 0
        /// Median delay: events (interest shift) or hours (churn risk); nil when nothing was caught.
        package var delayP50: Double?

        enum CodingKeys: String, CodingKey {
            case alerts, trueAlerts = "true_alerts", changesLive = "changes_live", changesCaught = "changes_caught"
            case delayP50 = "delay_p50"
        }
    }

    package var region: String
    package var alerts = 0
    package var trueAlerts = 0
    package var changesLive = 0
    package var changesCaught = 0
    /// Median delay in events of the caught interest shifts (the headline figure).
    package var delayP50: Double?
    package var precision: Double?
    package var recall: Double?
    /// The thresholds in force when scored (nil: the agent never received any).
    package var threshold: Double?
    package var churnThreshold: Double?
    package var interestShift = Kind()
    package var churnRisk = Kind()

    enum CodingKeys: String, CodingKey {
        case region, alerts, trueAlerts = "true_alerts", changesLive = "changes_live", changesCaught = "changes_caught"
        case delayP50 = "delay_p50", precision, recall, threshold, churnThreshold = "churn_threshold"
        case interestShift = "interest_shift", churnRisk = "churn_risk"
    }

    /// - Parameters:
    ///   - eventTimes: each shopper's live event times (for delays in events).
    package init(region: String, alerts: [DriftAlert], truth: [ShopperSimulator.Shift],
                 eventTimes: [UInt64: [Int64]], liveFrom: Int64, matchDays: Double = 3,
                 thresholds: AlertThresholds?) {
        self.region = region
        threshold = thresholds?.interestShift
        churnThreshold = thresholds?.churnRisk
        let window = Int64(matchDays * 86_400)
        var changes: [UInt64: [ShopperSimulator.Shift]] = [:]
        for change in truth { changes[change.user, default: []].append(change) }
        // First true alert per change (user, kind, time).
        var firstCaught: [String: Int64] = [:]
        for alert in alerts {
            let kind: ShopperSimulator.Shift.Kind = alert.kind == .interestShift ? .interestShift : .disengagement
            let matched = changes[alert.user]?.first {
                $0.kind == kind && $0.time <= alert.time && alert.time <= $0.time + window
            }
            switch alert.kind {
            case .interestShift: interestShift.alerts += 1
            case .churnRisk: churnRisk.alerts += 1
            }
            guard let matched else { continue }
            switch alert.kind {
            case .interestShift: interestShift.trueAlerts += 1
            case .churnRisk: churnRisk.trueAlerts += 1
            }
            let key = "\(matched.user)-\(matched.kind.rawValue)-\(matched.time)"
            firstCaught[key] = min(firstCaught[key] ?? .max, alert.time)
        }
        var shiftDelays: [Double] = [], churnDelays: [Double] = []
        for change in truth where change.time >= liveFrom {
            let caught = firstCaught["\(change.user)-\(change.kind.rawValue)-\(change.time)"]
            switch change.kind {
            case .interestShift:
                interestShift.changesLive += 1
                guard let caught else { continue }
                interestShift.changesCaught += 1
                let times = eventTimes[change.user] ?? []
                shiftDelays.append(Double(times.filter { $0 >= change.time && $0 <= caught }.count))
            case .disengagement:
                churnRisk.changesLive += 1
                guard let caught else { continue }
                churnRisk.changesCaught += 1
                churnDelays.append(Double(caught - change.time) / 3_600)
            }
        }
        interestShift.delayP50 = Self.median(shiftDelays)
        churnRisk.delayP50 = Self.median(churnDelays)
        self.alerts = interestShift.alerts + churnRisk.alerts
        trueAlerts = interestShift.trueAlerts + churnRisk.trueAlerts
        changesLive = interestShift.changesLive + churnRisk.changesLive
        changesCaught = interestShift.changesCaught + churnRisk.changesCaught
        delayP50 = interestShift.delayP50
        precision = self.alerts > 0 ? Double(trueAlerts) / Double(self.alerts) : nil
        recall = changesLive > 0 ? Double(changesCaught) / Double(changesLive) : nil
    }

    private static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    /// One line for people.
    package var summary: String {
        func percent(_ value: Double?) -> String { value.map { String(format: "%.0f%%", 100 * $0) } ?? "-" }
        let shiftDelay = interestShift.delayP50.map { String(format: "%.0f events", $0) } ?? "-"
        let churnDelay = churnRisk.delayP50.map { String(format: "%.0f h", $0) } ?? "-"
        return "\(alerts) alerts, \(trueAlerts) matching an injected change (precision \(percent(precision))); "
            + "\(changesCaught) of \(changesLive) live changes caught (recall \(percent(recall))). "
            + "Interest shifts: \(interestShift.trueAlerts)/\(interestShift.alerts) true, "
            + "\(interestShift.changesCaught)/\(interestShift.changesLive) caught, median delay \(shiftDelay). "
            + "Churn risk: \(churnRisk.trueAlerts)/\(churnRisk.alerts) true, "
            + "\(churnRisk.changesCaught)/\(churnRisk.changesLive) caught, median delay \(churnDelay)."
    }
}
