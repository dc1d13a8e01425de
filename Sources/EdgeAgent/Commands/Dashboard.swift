import ArgumentParser
import FedNode

struct Dashboard: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the address of the running agent's alerts page, to open in a browser.",
        discussion: """
            The page (GET /alerts on the agent's operator endpoint) lists the newest 100 alerts with their \
            explanations, what changed and what to offer, the thresholds in force, the privacy budget, and \
            each alert sink's deliveries; it reloads itself every 5 seconds. The address goes through /login \
            with the endpoint's token, which the browser keeps as a cookie: treat it like the token file.

            Example:
              edge-agent dashboard --config configs/agent-1.yaml
            """
    )

    @Option(name: .long, help: "The agent's YAML configuration.")
    var config: String

    func run() throws {
        let configuration = try EdgeAgentConfiguration.load(path: config)
        let settings = try configuration.http.settings(directory: configuration.dataDirectory)
        print(try OperatorClient.browserURL("/alerts", settings: settings, directory: configuration.dataDirectory))
    }
}
