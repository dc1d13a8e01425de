import ArgumentParser
import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation

struct FitDrift: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fit-drift",
        abstract: "Fit the interest-shift detector's settings to a population of shoppers; write them for an agent's configuration.",
        discussion: """
            Needs no labels: half of the shoppers' streams are continued, at a random point, by another \
            shopper's stream (a switch with a known time); a coordinate search over the detector's settings \
            maximises the switches detected within 30 events at the alert budget, the threshold set so that the \
            unswitched streams raise no more than the budget. Only fold 0 of the shoppers (a hash of their id) is \
            read, so that evaluate-drift can report on fold 1, shoppers the settings never saw.

            The output is a JSON object of alerts.detector keys. An agent loads it with \
            alerts.detector_file: FILE in its configuration; evaluate-drift with --detector-settings @FILE.
            Without --out it is printed on stdout; progress and notes go to stderr (a bar on a terminal, a \
            line every 10 s otherwise).
            On a node, fit on the node's own history (it never leaves the node):
              edge-agent fit-drift --data history.csv --out detector.json
            """
    )

    @Option(name: .long, help: "Shoppers' events: a Taobao CSV or JSONL file.")
    var data: String

    @Option(name: .long, help: "taobao or jsonl.")
    var format = "taobao"

    @Option(name: .long, help: "Alert budget the detection is fitted at (alerts per 10,000 events).")
    var budget = 50.0

    @Option(name: .long, help: "Seed of the splice (which shoppers switch, where, to whom).")
    var spliceSeed: UInt64 = 11

    @Option(name: .long, help: "Most passes of the coordinate search.")
    var passes = 3

    @Option(name: .long, help: "Prefer settings whose median detection delay (events) is at most this.")
    var maxDelay: Double?

    @Option(name: .long, help: "Start from these settings (JSON object or @FILE) instead of the defaults.")
    var start: String?

    @Option(name: .long, help: "Where to write the fitted settings (JSON); default: print them.")
    var out: String?

    func validate() throws {
        guard EventFormat(rawValue: format) != nil else { throw ValidationError("--format must be taobao or jsonl") }
        guard budget > 0 && budget < 10_000 else { throw ValidationError("--budget must be in (0, 10000)") }
        guard (1...10).contains(passes) else { throw ValidationError("--passes must be in 1...10") }
        if let maxDelay, !(maxDelay >= 1) { throw ValidationError("--max-delay must be at least 1 event") }
    }

    func run() throws {
        let started = ContinuousClock.now
        let progress = ProgressReporter()
        let loaded = try SimulationData.file(path: data, format: EventFormat(rawValue: format) ?? .taobao,
                                             shape: .small, keep: 400, progress: progress)
        let fit = loaded.fold(0)
        let streams = DriftEvaluation.spliced(fit.users, raw: fit.raw, seed: spliceSeed)
        let switched = streams.filter { $0.switchIndex != nil }.count
        guard switched >= 20 else {
            throw ValidationError("\(data): fold 0 has \(switched) switchable shoppers (≥ 25 events each); at least 20 are needed")
        }
        let prior = DriftEvaluation.prior(from: fit.raw, categories: loaded.rawCategories)
        let initial = try start.map { try Self.loadSettings($0, option: "--start") } ?? SwitchDetector.Settings()
        progress.note("fitting on fold 0: \(streams.count) streams (\(switched) switched), "
                      + "\(streams.reduce(0) { $0 + $1.raw.count }) events, budget \(budget)/10k")
        let result = DriftFitting.fit(streams: streams, prior: prior, budget: budget, start: initial, passes: passes,
                                      maxDelay: maxDelay, progress: progress)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let text = String(decoding: try encoder.encode(result.settings), as: UTF8.self) + "\n"
        if let out {
            try text.write(toFile: out, atomically: true, encoding: .utf8)
        } else {
            print(text, terminator: "")
        }
        func delay(_ detection: DriftEvaluation.Detection) -> String { detection.delayP50.map { "\(Int($0))" } ?? "-" }
        progress.note(String(format: "fold 0, %.0f/10k: %.1f%% detected (delay p50 %@) with the fitted settings, "
                             + "%.1f%% (delay p50 %@) at the start; %d evaluations in %.0f s%@", budget,
                             100 * result.detection.rate, delay(result.detection), 100 * result.initial.rate,
                             delay(result.initial), result.evaluations, (ContinuousClock.now - started).inSeconds,
                             out.map { "; wrote \($0)" } ?? ""))
        progress.note("Report on shoppers the settings never saw: edge-agent evaluate-drift --data \(data) "
                      + "--detector-settings @\(out ?? "FILE")")
    }

    /// Detector settings from a JSON object or @FILE, every key validated.
    static func loadSettings(_ value: String, option: String) throws -> SwitchDetector.Settings {
        let data: Data
        if value.hasPrefix("@") {
            let path = String(value.dropFirst())
            guard let contents = FileManager.default.contents(atPath: path) else {
                throw ValidationError("\(option): cannot read \(path)")
            }
            data = contents
        } else {
            data = Data(value.utf8)
        }
        do {
            return try JSONDecoder().decode(SwitchDetector.Settings.self, from: data)
        } catch {
            throw ValidationError("\(option): \(error)")
        }
    }
}
