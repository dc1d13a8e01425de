package import FedLogic
package import FedNode
import Foundation

/// `edge-agent evaluate-churn`: the churn-risk detector against a fixed-silence rule ("no session for
/// D hours") at equal false warnings. Each shopper is a list of event times; a churner has a known
/// moment of leaving. Both methods are replayed as live scoring runs (a check every hour of event time,
/// after the shopper's warm-up sessions); each method's threshold is the lowest whose warnings on the
/// shoppers who stay fit the budget (per 1,000 shopper-days at risk); a churner counts as caught when
/// warned within `horizonDays` after leaving.
package enum ChurnEvaluation {
    package struct Shopper: Sendable {
        package var times: [Int64]
        /// When they left (simulator: the disengagement; real data: their last event); nil: they stay.
        package var left: Int64?
        package init(times: [Int64], left: Int64?) { (self.times, self.left) = (times, left) }
    }

    package struct Row: Sendable, Codable {
        package var workload: String
        package var method: String
        package var budgetPer1kShopperDays: Double
        package var churners: Int
        package var detectionRate: Double
        package var falseWarningsPer1kShopperDays: Double
        package var delayP50Hours: Double?

        enum CodingKeys: String, CodingKey {
            case workload, method, churners
            case budgetPer1kShopperDays = "budget_per_1k_shopper_days", detectionRate = "detection_rate"
            case falseWarningsPer1kShopperDays = "false_warnings_per_1k_shopper_days", delayP50Hours = "delay_p50_hours"
        }
    }

    static let check: Int64 = 3_600

    /// Every check's statistic for one shopper over [first event, end): (check time, statistic, id of
    /// the silence it belongs to). Statistics: the churn risk, or the silence in hours.
    private static func series(_ shopper: Shopper, end: Int64, detector: ChurnDetector,
                               risk: Bool) -> [(time: Int64, value: Double, silence: Int)] {
        guard let first = shopper.times.first else { return [] }
        var state = ChurnDetector.UserState(), out: [(Int64, Double, Int)] = [], index = 0
        var tick = (first / check + 1) * check
        while tick < end {
            // The events before this check (a check comes before the events at or after it).
            while index < shopper.times.count && shopper.times[index] < tick {
                detector.observe(&state, time: shopper.times[index], intent: false)
                index += 1
            }
            if let last = state.lastTime, state.sessionCount >= detector.settings.warmUpSessions {
                // `index` (events seen) identifies the silence: each event starts a new one.
                out.append((tick, risk ? detector.risk(state, now: tick) : Double(tick - last) / 3_600, index))
            }
            tick += check
        }
        return out
    }

    /// First warning time of each silence at `threshold` (a silence warns once).
    private static func warnings(_ series: [(time: Int64, value: Double, silence: Int)], threshold: Double) -> [Int64] {
        var warned = -1, times: [Int64] = []
        for point in series where point.value >= threshold && point.silence != warned {
            warned = point.silence
            times.append(point.time)
        }
        return times
    }

    /// Both methods' rows at each budget.
    ///
    /// - Parameter progress: one phase per method, counting the shoppers replayed.
    package static func evaluate(workload: String, shoppers: [Shopper], end: Int64, budgets: [Double],
                                 horizonDays: Double = 3, settings: ChurnDetector.Settings = .init(),
                                 progress: ProgressReporter = .silent) -> [Row] {
        let detector = ChurnDetector(settings: settings)
        let stayers = shoppers.filter { $0.left == nil }, churners = shoppers.filter { $0.left != nil }
        // Shopper-days at risk of the stayers: from their warm-up to the end.
        var days = 0.0
        for shopper in stayers {
            var state = ChurnDetector.UserState()
            for time in shopper.times {
                detector.observe(&state, time: time, intent: false)
                if state.sessionCount >= settings.warmUpSessions {
                    days += Double(end - time) / 86_400
                    break
                }
            }
        }
        var rows: [Row] = []
        for (method, risk) in [("feddrift_churn", true), ("fixed_silence", false)] {
            // One method's series at a time: they are the memory of this evaluation.
            progress.begin("\(workload): replaying for \(method)", total: shoppers.count, unit: "shoppers")
            func replay(_ shopper: Shopper) -> [(time: Int64, value: Double, silence: Int)] {
                defer { progress.advance() }
                return series(shopper, end: end, detector: detector, risk: risk)
            }
            let stay = stayers.map(replay)
            let leave = churners.map(replay)
            progress.finish()
            let values = stay.flatMap { $0.map(\.value) }
            for budget in budgets {
                let allowed = Int(budget * days / 1_000)
                func falseWarnings(_ threshold: Double) -> Int { stay.reduce(0) { $0 + warnings($1, threshold: threshold).count } }
                var low = values.min() ?? 0, high = (values.max() ?? 1) + 1
                for _ in 0..<50 {
                    let middle = (low + high) / 2
                    if falseWarnings(middle) > allowed { low = middle } else { high = middle }
                }
                var delays: [Double] = []
                for (index, shopper) in churners.enumerated() {
                    guard let left = shopper.left,
                          let first = warnings(leave[index], threshold: high).first(where: {
                              $0 >= left && Double($0 - left) <= horizonDays * 86_400
                          }) else { continue }
                    delays.append(Double(first - left) / 3_600)
                }
                delays.sort()
                rows.append(Row(workload: workload, method: method, budgetPer1kShopperDays: budget, churners: churners.count,
                                detectionRate: churners.isEmpty ? 0 : Double(delays.count) / Double(churners.count),
                                falseWarningsPer1kShopperDays: days > 0 ? Double(falseWarnings(high)) * 1_000 / days : 0,
                                delayP50Hours: delays.isEmpty ? nil : delays[delays.count / 2]))
            }
        }
        return rows
    }
}
