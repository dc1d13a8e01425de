import ArgumentParser
import FedIO
import FedLogic
import FedNode
import FedTools
import Foundation

struct EvaluateChurn: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate-churn",
        abstract: "Compare the churn-risk detector with a fixed-silence rule at equal false warnings.",
        discussion: """
            Workload 1: the built-in simulator with injected disengagement (10 % of the shoppers who do not \
            shift; their sessions collapse to 5 %, view-only, at a known time). Workload 2 (with --data): a \
            real-data proxy — shoppers with at least 4 sessions whose last event is more than 2.5 days before \
            the end of the file are taken to have left at their last event; the others stay. Both methods are \
            replayed with a check every hour of event time after each shopper's warm-up; each threshold keeps \
            the warnings on the shoppers who stay within the budget (per 1,000 shopper-days); a leaver counts \
            as caught when warned within 3 days. Delay: hours from leaving to the warning. Results go to \
            stdout; progress to stderr (a bar on a terminal, a line every 10 s otherwise).
            """
    )

    @Option(name: .long, help: "Real events: a Taobao CSV or JSONL file.")
    var data: String?

    @Option(name: .long, help: "taobao or jsonl.")
    var format = "taobao"

    @Option(name: .long, help: "Simulated shoppers.")
    var users = 3_000

    @Option(name: .long, help: "Simulator seed.")
    var seed: UInt64 = 3

    @Flag(name: .long, help: "One JSON object per (workload, method, budget).")
    var json = false

    func validate() throws {
        guard EventFormat(rawValue: format) != nil else { throw ValidationError("--format must be taobao or jsonl") }
        guard users >= 100 else { throw ValidationError("--users must be at least 100") }
    }

    func run() throws {
        var parameters = ShopperSimulator.Parameters()
        parameters.users = users
        parameters.seed = seed
        parameters.disengagementRate = 0.1
        let progress = ProgressReporter()
        let output = ShopperSimulator(parameters: parameters).run(progress: progress)
        let left = Dictionary(output.shifts.filter { $0.kind == .disengagement }.map { ($0.user, $0.time) },
                              uniquingKeysWith: { first, _ in first })
        var byUser: [UInt64: [Int64]] = [:]
        for event in output.events { byUser[event.user, default: []].append(event.timestamp) }
        let simulated = byUser.keys.sorted().map { user in
            ChurnEvaluation.Shopper(times: (byUser[user] ?? []).sorted(), left: left[user])
        }
        let end = parameters.start + Int64(parameters.days) * 86_400
        print(rows: ChurnEvaluation.evaluate(workload: "simulator", shoppers: simulated, end: end, budgets: [2, 5, 10],
                                             progress: progress))
        guard let data else { return }
        var times: [UInt64: [Int64]] = [:]
        let reader = EventFileReader(path: data, format: EventFormat(rawValue: format) ?? .taobao)
        _ = try reader.read(progress: progress) { batch in
            for event in batch { times[event.user, default: []].append(event.timestamp) }
        }
        let last = times.values.compactMap { $0.max() }.max() ?? 0
        let real = times.keys.sorted().compactMap { user -> ChurnEvaluation.Shopper? in
            guard let list = times[user]?.sorted(), let final = list.last else { return nil }
            return ChurnEvaluation.Shopper(times: list, left: final < last - 60 * 3_600 ? final : nil)
        }
        print(rows: ChurnEvaluation.evaluate(workload: "real_stopped_shoppers", shoppers: real, end: last + 1,
                                             budgets: [2, 5, 10], progress: progress))
    }

    private func print(rows: [ChurnEvaluation.Row]) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        for row in rows {
            if json {
                Swift.print(String(decoding: (try? encoder.encode(row)) ?? Data(), as: UTF8.self))
            } else {
                Swift.print(String(format: "%@  budget %4.1f/1k shopper-days  %-15@ caught %5.1f%% of %d  false %5.2f/1k  "
                                   + "delay p50 %@ h", row.workload, row.budgetPer1kShopperDays, row.method,
                                   100 * row.detectionRate, row.churners, row.falseWarningsPer1kShopperDays,
                                   row.delayP50Hours.map { String(format: "%.0f", $0) } ?? "-"))
            }
        }
    }
}
