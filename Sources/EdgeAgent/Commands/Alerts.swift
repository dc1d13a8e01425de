import ArgumentParser
import FedIO
import FedLogic
import FedNode
import FedTools
import Foundation

struct Alerts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List or follow this agent's alerts (interest shifts and churn risk), with why and what to offer.",
        discussion: """
            Reads data_directory/alerts.sqlite, where the running agent stores every alert before publishing \
            it. Safe to run while the agent runs. By default prints the most recent alerts as a table, each \
            with its reason in words, and the thresholds in force; --json prints every alert as one JSON \
            object per line (the published form); --follow keeps printing new alerts as they are raised.

            Examples:
              edge-agent alerts --config configs/agent-1.yaml
              edge-agent alerts --config configs/agent-1.yaml --kind churn_risk --limit 50
              edge-agent alerts --config configs/agent-1.yaml --json --since 1512057600 > alerts.jsonl
            """
    )

    @Option(name: .long, help: "The agent's YAML configuration.")
    var config: String

    @Option(name: .long, help: "Only alerts raised at or after this event time (unix seconds).")
    var since: Int64?

    @Option(name: .long, help: "Only this kind: interest_shift or churn_risk.")
    var kind: DriftAlert.Kind?

    @Option(name: .long, help: "Table: the most recent N alerts (0: all). --json prints all.")
    var limit = 20

    @Flag(name: .long, help: "Keep printing new alerts until interrupted.")
    var follow = false

    @Flag(name: .long, help: "One JSON object per line (the published form).")
    var json = false

    func validate() throws {
        guard limit >= 0 else { throw ValidationError("--limit must be 0 (all) or more") }
    }

    func run() async throws {
        let configuration = try EdgeAgentConfiguration.load(path: config)
        let thresholds = Self.thresholdsLine(configuration)
        guard FileManager.default.fileExists(atPath: configuration.alertStorePath) else {
            if json { return }
            print("No alerts yet for \(configuration.id): the agent has not stored any "
                  + "(\(configuration.alertStorePath) does not exist).\n\(thresholds)")
            return
        }
        let store = try AlertStore(path: configuration.alertStorePath)
        var last: Int64 = 0
        var all: [DriftAlert] = [], stored = 0
        for (sequence, alert) in try store.newer(than: last) {
            last = sequence
            stored += 1
            if matches(alert) { all.append(alert) }
        }
        if json {
            for alert in all { print(try store.json(alert)) }
        } else {
            let shown = limit == 0 ? all[...] : all.suffix(limit)
            let counts = Dictionary(grouping: all, by: \.kind).mapValues(\.count)
            let filtered = kind != nil || since != nil ? " matching (of \(stored) stored)" : ""
            print("Alerts of \(configuration.id): \(all.count)\(filtered) — \(counts[.interestShift] ?? 0) interest shift, "
                  + "\(counts[.churnRisk] ?? 0) churn risk\(since.map { ", since \(Self.time($0))" } ?? "").")
            print(thresholds)
            if all.isEmpty {
                print("No alert matches. An alert is raised when a shopper's score reaches the threshold in force.")
            } else {
                if shown.count < all.count {
                    print("The \(shown.count) most recent (--limit 0 for all, --json for machines):")
                }
                print(Self.table(Array(shown)))
            }
        }
        guard follow else { return }
        while !Task.isCancelled {
            try await Task.sleep(for: .milliseconds(500))
            for (sequence, alert) in try store.newer(than: last) {
                last = sequence
                guard matches(alert) else { continue }
                print(json ? try store.json(alert) : Self.table([alert], header: false))
            }
        }
    }

    private func matches(_ alert: DriftAlert) -> Bool {
        (since.map { alert.time >= $0 } ?? true) && (kind.map { alert.kind == $0 } ?? true)
    }

    /// The thresholds in force, from the agent's thresholds.json, or its cold-start values.
    static func thresholdsLine(_ configuration: EdgeAgentConfiguration) -> String {
        if let applied = AlertThresholdsFile.read(configuration.thresholdsPath) {
            return String(format: "Thresholds in force (from the aggregator, %@): interest shift %.2f, churn risk %.2f.",
                          time(applied.updated), applied.thresholds.interestShift, applied.thresholds.churnRisk)
        }
        return String(format: "Thresholds in force: the cold-start values of the configuration (interest shift %.2f, "
                      + "churn risk %.2f); the aggregator has sent none yet.",
                      configuration.alerts.coldStartThreshold, configuration.alerts.coldStartChurnThreshold)
    }

    static func time(_ seconds: Int64) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm"
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds))) + " UTC"
    }

    /// A row per alert (time, kind, shopper, score against threshold, what changed, how many items to
    /// offer) and its reason in words below it.
    static func table(_ alerts: [DriftAlert], header: Bool = true) -> String {
        var lines: [String] = []
        func pad(_ text: String, _ width: Int) -> String {
            text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
        }
        if header {
            lines.append(pad("TIME", 21) + pad("KIND", 16) + pad("SHOPPER", 12) + pad("SCORE/THRESHOLD", 17)
                         + pad("CHANGE", 44) + "OFFER")
        }
        for alert in alerts {
            let change: String
            switch alert.kind {
            case .interestShift:
                let up = alert.emerging.prefix(2).map { String(format: "+%llu %.0f→%.0f%%", $0.category, 100 * $0.before, 100 * $0.after) }
                let down = alert.fading.prefix(1).map { String(format: "−%llu %.0f→%.0f%%", $0.category, 100 * $0.before, 100 * $0.after) }
                change = (up + down).joined(separator: " ")
            case .churnRisk:
                change = String(format: "silent %.1f d (usually %.1f sessions/d)", alert.silenceDays ?? 0,
                                alert.usualSessionsPerDay ?? 0)
            }
            let kind = alert.kind == .interestShift ? "interest shift" : "churn risk"
            lines.append(pad(time(alert.time), 21) + pad(kind, 16) + pad("\(alert.user)", 12)
                         + pad(String(format: "%.2f ≥ %.2f", alert.score, alert.threshold), 17)
                         + pad(change.isEmpty ? "-" : change, 44) + "\(alert.recommendations.count) items")
            lines.append("    " + alert.explanation)
        }
        return lines.joined(separator: "\n")
    }
}

extension DriftAlert.Kind: ExpressibleByArgument {}
