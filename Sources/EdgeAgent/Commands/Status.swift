import ArgumentParser
import FedIO
import FedLogic
import FedNode
import Foundation

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask the running edge agent how it is doing.",
        discussion: """
            Reads the configuration for the operator endpoint (http.listen, or the port the running agent \
            wrote to data_directory/http.json) and its token, asks GET /status, and prints a summary: whether \
            it is connected to the aggregator, its last round and model, live ingest and scoring, the \
            thresholds in force and its privacy budget — saying plainly when it is disconnected or out of \
            budget. --json prints the endpoint's JSON as is. Exit status 1 when the agent does not answer.

            Example:
              edge-agent status --config configs/agent-1.yaml
            """
    )

    @Option(name: .long, help: "The agent's YAML configuration.")
    var config: String

    @Flag(name: .long, help: "Print the /status JSON as the endpoint returns it.")
    var json = false

    func run() async throws {
        let configuration = try EdgeAgentConfiguration.load(path: config)
        let settings = try configuration.http.settings(directory: configuration.dataDirectory)
        guard await OperatorClient.printStatus(role: "edge agent", settings: settings, directory: configuration.dataDirectory, json: json,
                                               summary: Self.summary) else { throw ExitCode(1) }
    }

    static func summary(_ status: [String: Any]) -> String {
        func int(_ value: Any?) -> Int { (value as? NSNumber)?.intValue ?? 0 }
        var lines = ["edge agent '\(status["agent_id"] as? String ?? "?")'"]
        if (status["connected"] as? Bool) == true {
            lines.append("aggregator \(status["aggregator"] as? String ?? "?"): connected"
                + ((status["registered"] as? Bool) == true ? ", registered" : ", registering"))
        } else {
            lines.append("aggregator \(status["aggregator"] as? String ?? "?"): DISCONNECTED (reconnecting with back-off)")
        }
        let model = int(status["model_version"])
        lines.append("last round \(int(status["last_round"])), model \(model >= 0 ? "v\(model)" : "none yet")"
            + (int(status["refused_rounds"]) > 0 ? ", \(int(status["refused_rounds"])) rounds refused by the privacy floor" : ""))
        if (status["participating"] as? Bool) == false {
            lines.append("NOT TRAINING: \(status["stopped_reason"] as? String ?? "")")
        }
        lines.append("live: \(int(status["events_ingested"])) events stored, \(int(status["events_refused"])) refused, "
            + "\(int(status["events_scored"])) scored, \(int(status["users"])) shoppers"
            + ((status["replaying"] as? Bool) == true ? " (replaying history)" : ""))
        if let thresholds = status["thresholds"] as? [String: Any] {
            lines.append(String(format: "thresholds: interest shift %.3f, churn risk %.3f",
                                (thresholds["interest_shift"] as? NSNumber)?.doubleValue ?? 0,
                                (thresholds["churn_risk"] as? NSNumber)?.doubleValue ?? 0))
        }
        if let privacy = status["privacy"] as? [String: Any] {
            if privacy["mode"] as? String == "NON-PRIVATE" {
                lines.append("privacy: NON-PRIVATE")
            } else {
                let budget = (privacy["epsilon_budget"] as? NSNumber)?.doubleValue ?? 0
                let spent = (privacy["epsilon_spent"] as? NSNumber)?.doubleValue ?? 0
                let left = (privacy["epsilon_left"] as? NSNumber)?.doubleValue ?? 0
                lines.append(String(format: "privacy: ε %.4f spent of %.4f, %.4f left", spent, budget, left)
                    + (left < 1e-3 ? " — BUDGET SPENT: no more releases; scoring continues" : ""))
            }
        }
        return lines.joined(separator: "\n")
    }
}
