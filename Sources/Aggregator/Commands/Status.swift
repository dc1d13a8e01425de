import ArgumentParser
import FedIO
import FedLogic
import FedNode
import Foundation

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask the running aggregator how the federation is doing.",
        discussion: """
            Reads the configuration for the operator endpoint (http.listen, or the port the running process \
            wrote to state_directory/http.json) and its token, asks GET /status, and prints a summary: the \
            round and its phase, live agents against the quorum (saying plainly when below it), the last \
            round's outcome and accuracy, and each agent's counts. --json prints the endpoint's JSON as is. \
            Exit status 1 when the aggregator does not answer.

            Example:
              aggregator status --config configs/aggregator.yaml
            """
    )

    @Option(name: .long, help: "The aggregator's YAML configuration.")
    var config: String

    @Flag(name: .long, help: "Print the /status JSON as the endpoint returns it.")
    var json = false

    func run() async throws {
        let configuration = try AggregatorConfiguration.load(path: config)
        let settings = try configuration.http.settings(directory: configuration.stateDirectory)
        guard await OperatorClient.printStatus(role: "aggregator", settings: settings, directory: configuration.stateDirectory, json: json,
                                               summary: Self.summary) else { throw ExitCode(1) }
    }

    static func summary(_ status: [String: Any]) -> String {
        func int(_ value: Any?) -> Int { (value as? NSNumber)?.intValue ?? 0 }
        var lines: [String] = []
        let phase = status["phase"] as? String ?? "?"
        let round = int(status["round"])
        lines.append("aggregator '\(status["aggregator_id"] as? String ?? "?")': "
            + (phase == "collecting" ? "round \(int(status["open_round"])) open, \(int(status["seconds_to_deadline"])) s to its deadline"
                                     : "between rounds (last opened: \(round))")
            + ", model v\(int(status["model_version"]))")
        let live = int(status["agents_live"]), enrolled = int(status["agents_enrolled"]), quorum = int(status["min_agents"])
        lines.append("agents: \(live) of \(enrolled) live"
            + ((status["below_quorum"] as? Bool) == true ? " — BELOW QUORUM: \(quorum) needed, no round can open" : " (quorum \(quorum))"))
        if let privacy = status["privacy"] as? [String: String] {
            lines.append("privacy: \(privacy["mode"] ?? "?"), z = \(privacy["noise_multiplier"] ?? "?"), q = \(privacy["sampling_rate"] ?? "?"); "
                + "secure aggregation \(privacy["secure_aggregation"] ?? "off")")
        }
        let last = status["last"] as? [String: Any]
        if let report = last?["last_round"] as? [String: Any] {
            let agents = (report["agents"] as? [String])?.count ?? 0
            let outcome = (report["aggregated"] as? Bool) == true
                ? "aggregated \(agents) agents\((report["secure_aggregation"] as? Bool) == true ? " (secure sum)" : "")"
                : "FAILED quorum"
            lines.append(String(format: "last round %d: %@, held-out top-10 %.1f %%, %.1f s", int(report["round"]), outcome,
                                100 * ((report["top10"] as? NSNumber)?.doubleValue ?? 0),
                                (report["seconds"] as? NSNumber)?.doubleValue ?? 0))
        } else {
            lines.append("no round has finished yet")
        }
        if let thresholds = last?["thresholds"] as? [String: Any] {
            lines.append(String(format: "thresholds: interest shift %.3f, churn risk %.3f",
                                (thresholds["interest_shift"] as? NSNumber)?.doubleValue ?? 0,
                                (thresholds["churn_risk"] as? NSNumber)?.doubleValue ?? 0))
        }
        if let agents = last?["agents"] as? [String: [String: Any]] {
            for (id, record) in agents.sorted(by: { $0.key < $1.key }) {
                lines.append("  \(id): \(int(record["accepted"])) updates accepted, \(int(record["rejected"])) rejected, "
                    + "last round \(int(record["last_round"])), ledger entry \(int(record["ledger_sequence"]))")
            }
        }
        return lines.joined(separator: "\n")
    }
}
