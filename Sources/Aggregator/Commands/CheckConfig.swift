import ArgumentParser
import FedIO
import FedLogic
import FedNode
import Foundation

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate an aggregator configuration without starting anything.",
        discussion: """
            Reads the file as `aggregator run` would — with the FEDDRIFT_AGGREGATOR_… environment overrides, \
            strictly (an unknown key is an error naming the closest known one; a wrong type or range names the \
            key, the value and what is allowed) — checks that every enrolled agent's public key file and the catalog read, \
            and prints what the federation will run with. Exit status 0 when it would start, 1 otherwise.

            Example:
              aggregator check-config --config configs/aggregator.yaml
              FEDDRIFT_AGGREGATOR_ROUNDS__MIN_AGENTS=3 aggregator check-config --config configs/aggregator.yaml
            """
    )

    @Option(name: .long, help: "The aggregator's YAML configuration.")
    var config: String

    func run() throws {
        let configuration = try AggregatorConfiguration.load(path: config)
        var problems: [String] = []
        var keys: [(id: String, file: String, key: NodePublicIdentity)] = []
        for agent in configuration.agents {
            do {
                keys.append((agent.id, agent.publicKeyFile, try KeyDirectory.readPublicIdentity(file: agent.publicKeyFile)))
            } catch {
                problems.append("agent '\(agent.id)': \(error)")
            }
        }
        do { try AggregatorConfiguration.checkDistinctKeys(keys) } catch { problems.append("\(error)") }
        var catalog = "none (trend warnings name model indices)"
        do {
            if let loaded = try configuration.loadCatalog() {
                catalog = "\(configuration.catalog ?? ""): \(loaded.entries.count) categories named"
            }
        } catch {
            problems.append("\(error)")
        }
        let h = configuration.announcedHyperparameters, privacy = configuration.privacySummary
        print("""
            \(config): valid.
              listen \(configuration.listen), announce \(configuration.announce), state \(configuration.stateDirectory)
              shared state: \(configuration.postgres.map { "\($0.location) (\($0.usesTLS ? "TLS" : "plaintext on loopback\($0.isLoopback ? "" : ": insecure_plaintext")"); node \($0.nodeName), lease \($0.leaseSeconds) s): leads or stands by" } ?? "none (checkpoint.sqlite in the state directory)")
              \(configuration.agents.count) enrolled agents, quorum \(configuration.rounds.minAgents), \
            round timeout \(configuration.rounds.timeoutSeconds) s, max rounds \(configuration.rounds.maxRounds == 0 ? "unlimited" : "\(configuration.rounds.maxRounds)")
              model \(configuration.model.preset); q = \(h.samplingRate), S = \(h.clipNorm), z = \(h.noiseMultiplier) (\(privacy["mode"] ?? ""))
              secure aggregation: \(privacy["secure_aggregation"] ?? "off")
              aggregation: \(configuration.serverOptimizer.rule)\(configuration.serverOptimizer.rule.isRobust ? " (Byzantine-robust, coordinate-wise)" : " (FedAvg: one agent can steer it within its norm bound)")
              catalog: \(catalog)
            """)
        guard problems.isEmpty else {
            for problem in problems { print("  problem: \(problem)") }
            throw ExitCode(1)
        }
    }
}
