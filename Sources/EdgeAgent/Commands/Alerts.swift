import ArgumentParser
import FedIO
import FedLogic
import FedNode
import FedTools
import Foundation

struct Alerts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List or follow this agent's interest-shift alerts, with their recommendations.",
        discussion: """
            Reads data_directory/alerts.sqlite, where the running agent stores every alert before publishing \
            it. Safe to run while the agent runs. --follow keeps printing new alerts as they are raised.
            """
    )

    @Option(name: .long, help: "The agent's YAML configuration.")
    var config: String

    @Option(name: .long, help: "Only alerts raised at or after this event time (unix seconds).")
    var since: Int64?

    @Flag(name: .long, help: "Keep printing new alerts until interrupted.")
    var follow = false

    @Flag(name: .long, help: "One JSON object per line (the published form).")
    var json = false

    func run() async throws {
        let configuration = try EdgeAgentConfiguration.load(path: config)
        guard FileManager.default.fileExists(atPath: configuration.alertStorePath) else {
            throw ValidationError("no alerts yet: \(configuration.alertStorePath) does not exist")
        }
        let store = try AlertStore(path: configuration.alertStorePath)
        var last: Int64 = 0
        repeat {
            for (sequence, alert) in try store.newer(than: last) {
                last = sequence
                if let since, alert.time < since { continue }
                print(json ? try store.json(alert) : Self.describe(alert))
            }
            if follow { try await Task.sleep(for: .milliseconds(500)) }
        } while follow
    }

    static func describe(_ alert: DriftAlert) -> String {
        let time = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(alert.time)))
        let emerging = alert.emerging.map { String(format: "%llu (%.2f)", $0.category, $0.weight) }.joined(separator: ", ")
        let fading = alert.fading.map { String(format: "%llu (%.2f)", $0.category, $0.weight) }.joined(separator: ", ")
        let items = alert.recommendations.map { "\($0.item)" }.joined(separator: " ")
        return String(format: "%@  user %llu  score %.2f ≥ %.2f  model v%llu\n  emerging: %@\n  fading:   %@\n  recommend: %@",
                      time, alert.user, alert.score, alert.threshold, alert.modelVersion,
                      emerging.isEmpty ? "-" : emerging, fading.isEmpty ? "-" : fading, items.isEmpty ? "-" : items)
    }
}
