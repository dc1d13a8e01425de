import ArgumentParser
import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation

struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate synthetic shoppers (Taobao CSV) with injected interest shifts and disengagement, and their ground truth.",
        discussion: """
            Writes FILE (user_id,item_id,category_id,behavior_type,timestamp) and FILE.truth.jsonl, one \
            object per changed shopper: kind (interest_shift or disengagement), user, time, event_index, \
            fading_categories, emerging_categories. Defaults are fitted to the real Taobao excerpts \
            (docs/SIMULATOR.md). Progress goes to stderr (a bar on a terminal, a line every 10 s otherwise).

            Example: shifts during days 6.2-8 and 5 % of shoppers fading away during days 6-7:
              edge-agent simulate --users 2000 --shift-days 6.2-8 --disengagement-rate 0.05 \
                --disengagement-days 6-7 --out region-1.csv
            """
    )

    @Option(name: .long, help: "Number of shoppers.")
    var users = 1_000

    @Option(name: .long, help: "Days simulated.")
    var days = 9

    @Option(name: .long, help: "Seed; the same seed gives the same shoppers.")
    var seed: UInt64 = 1

    @Option(name: .long, help: "Share of shoppers whose interests shift once (0 to 1).")
    var shiftRate = 0.3

    @Option(name: .long, help: "When shifts happen, in days from the start: FROM-TO (default: the middle 30 % of the period).")
    var shiftDays: String?

    @Option(name: .long, help: "Share of the other shoppers who disengage once: their sessions collapse to a few view-only ones (0 to 1).")
    var disengagementRate = 0.0

    @Option(name: .long, help: "When disengagement begins, in days from the start: FROM-TO (default: as shifts).")
    var disengagementDays: String?

    @Option(name: .long, help: "A category demand trend, RANK:DAY:FACTOR (repeatable): from DAY on, the category of popularity rank RANK (0 = the busiest) gets FACTOR times its usual share of choices (3 = a surge, 0.25 = a collapse).")
    var trend: [String] = []

    @Option(name: .long, help: "Where to write the events.")
    var out: String

    /// `--trend` values as the simulator's trends.
    private func trends(start: Int64) throws -> [ShopperSimulator.DemandTrend] {
        try trend.map { text in
            let parts = text.split(separator: ":").map(String.init)
            guard parts.count == 3, let rank = Int(parts[0]), let day = Double(parts[1]), let factor = Double(parts[2]),
                  rank >= 0, day >= 0, day <= Double(days), factor >= 0, factor != 1, factor.isFinite else {
                throw ValidationError("--trend must be RANK:DAY:FACTOR (rank ≥ 0, 0 ≤ day ≤ --days, factor ≥ 0 and not 1), e.g. 3:7.5:3; got '\(text)'")
            }
            return ShopperSimulator.DemandTrend(rank: rank, start: start + Int64(day * 86_400), factor: factor)
        }
    }
    func validate() throws {
        guard users > 0, days > 0 else { throw ValidationError("--users and --days must be positive") }
        guard (0...1).contains(shiftRate) else { throw ValidationError("--shift-rate must be between 0 and 1") }
        guard (0...1).contains(disengagementRate) else { throw ValidationError("--disengagement-rate must be between 0 and 1") }
        _ = try window(shiftDays, option: "--shift-days")
        _ = try window(disengagementDays, option: "--disengagement-days")
        _ = try trends(start: 0)
    }

    /// "FROM-TO" in days → a range of fractions of the period; nil when not given.
    private func window(_ text: String?, option: String) throws -> Range<Double>? {
        guard let text else { return nil }
        let parts = text.split(separator: "-", omittingEmptySubsequences: false).map { Double($0) }
        guard parts.count == 2, let from = parts[0], let to = parts[1], from >= 0, from < to, to <= Double(days) else {
            throw ValidationError("\(option) must be FROM-TO in days with 0 ≤ FROM < TO ≤ --days (\(days)), e.g. 6.2-8; got '\(text)'")
        }
        return (from / Double(days))..<(to / Double(days))
    }

    func run() throws {
        var parameters = ShopperSimulator.Parameters()
        parameters.users = users
        parameters.days = days
        parameters.seed = seed
        parameters.shiftRate = shiftRate
        parameters.disengagementRate = disengagementRate
        if let shifts = try window(shiftDays, option: "--shift-days") {
            parameters.shiftWindow = shifts
            parameters.disengagementWindow = shifts
        }
        if let disengagement = try window(disengagementDays, option: "--disengagement-days") {
            parameters.disengagementWindow = disengagement
        }
        parameters.trends = try trends(start: parameters.start)
        let progress = ProgressReporter()
        let output = ShopperSimulator(parameters: parameters).run(progress: progress)
        try output.taobaoCSV(progress: progress, label: "writing \(URL(fileURLWithPath: out).lastPathComponent)")
            .write(toFile: out, atomically: true, encoding: .utf8)
        try output.groundTruthJSONLines().write(toFile: out + ".truth.jsonl", atomically: true, encoding: .utf8)
        print("Wrote \(out) and \(out).truth.jsonl")
        print(output.summary)
        for trend in parameters.trends {
            print("Demand trend: category \(trend.category) (popularity rank \(trend.rank)) × \(trend.factor) from "
                  + ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(trend.start))))
        }
    }
}
