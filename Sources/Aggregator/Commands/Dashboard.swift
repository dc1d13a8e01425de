import ArgumentParser
import FedNode

struct Dashboard: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the address of the running aggregator's dashboard, to open in a browser.",
        discussion: """
            The dashboard (GET /dashboard on the operator endpoint) shows the round timeline, the held-out \
            accuracy per model, each agent's health, last contact and privacy budget, the alert rates against \
            their budgets and the thresholds over time; it reloads itself every 5 seconds. The address goes \
            through /login with the endpoint's token, which the browser keeps as a cookie: treat the address \
            like the token file. Nothing else is needed (no script, no external asset).

            Example:
              aggregator dashboard --config configs/aggregator.yaml
              chromium "$(aggregator dashboard --config configs/aggregator.yaml)"
            """
    )

    @Option(name: .long, help: "The aggregator's YAML configuration.")
    var config: String

    func run() throws {
        let configuration = try AggregatorConfiguration.load(path: config)
        let settings = try configuration.http.settings(directory: configuration.stateDirectory)
        print(try OperatorClient.browserURL("/dashboard", settings: settings, directory: configuration.stateDirectory))
    }
}
