import ArgumentParser
import FedIO
import FedLogic
import FedNode
import FedTools
import Foundation

struct ScoreAlerts: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score-alerts",
        abstract: "Compare an agent's alerts with a simulation's ground truth: precision, recall, delay.",
        discussion: """
            For simulated shoppers (edge-agent simulate writes FILE.truth.jsonl): an alert is true when its \
            shopper had an injected change of the matching kind (interest shift ↔ interest_shift, \
            disengagement ↔ churn_risk) at most --match-days before it. A change is live when it happened at \
            or after --live-from; caught when a true alert followed. The delay of an interest shift is the \
            shopper's events from the change to the first true alert (counted in --events); of a \
            disengagement, hours. The demo writes these figures to demo-run/summary.json.

            Example:
              edge-agent score-alerts --config demo-run/region-1.yaml --truth demo-run/region-1.csv.truth.jsonl \\
                --events demo-run/region-1-live.csv --live-from 1512057600 --json
            """
    )

    @Option(name: .long, help: "The agent's YAML configuration (its alert store and thresholds).")
    var config: String

    @Option(name: .long, help: "The simulation's ground truth (FILE.truth.jsonl).")
    var truth: String

    @Option(name: .long, help: "The live events (Taobao CSV or JSONL) the agent scored, for delays in events.")
    var events: String

    @Option(name: .long, help: "Format of --events: taobao or jsonl.")
    var format = "taobao"

    @Option(name: .long, help: "Event time (unix seconds) at which the live stream began.")
    var liveFrom: Int64

    @Option(name: .long, help: "How long after a change an alert still matches it (days).")
    var matchDays = 3.0

    @Flag(name: .long, help: "Print the figures as one JSON object.")
    var json = false

    func validate() throws {
        guard matchDays > 0 else { throw ValidationError("--match-days must be positive") }
        guard EventFormat(rawValue: format) != nil else { throw ValidationError("--format must be taobao or jsonl") }
    }

    func run() throws {
        let configuration = try EdgeAgentConfiguration.load(path: config)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        guard let truthText = try? String(contentsOfFile: truth, encoding: .utf8) else {
            throw ValidationError("cannot read the ground truth \(truth)")
        }
        var changes: [ShopperSimulator.Shift] = []
        for (number, line) in truthText.split(separator: "\n").enumerated() where !line.isEmpty {
            do {
                changes.append(try decoder.decode(ShopperSimulator.Shift.self, from: Data(line.utf8)))
            } catch {
                throw ValidationError("\(truth):\(number + 1): not a ground-truth object (\(error))")
            }
        }
        let eventFormat = EventFormat(rawValue: format) ?? .taobao
        var times: [UInt64: [Int64]] = [:]
        _ = try EventFileReader(path: events, format: eventFormat).read { batch in
            for event in batch { times[event.user, default: []].append(event.timestamp) }
        }
        var alerts: [DriftAlert] = []
        if FileManager.default.fileExists(atPath: configuration.alertStorePath) {
            alerts = try AlertStore(path: configuration.alertStorePath).newer(than: 0).map(\.1)
        }
        let scoring = AlertScoring(region: configuration.id, alerts: alerts, truth: changes, eventTimes: times,
                                   liveFrom: liveFrom, matchDays: matchDays,
                                   thresholds: AlertThresholdsFile.read(configuration.thresholdsPath)?.thresholds)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(scoring), as: UTF8.self))
        } else {
            print("\(configuration.id): \(scoring.summary)")
        }
    }
}
