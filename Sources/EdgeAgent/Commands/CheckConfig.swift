import ArgumentParser
import FedIO
import FedLogic
import FedNode
import Foundation

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate an edge agent's configuration without starting anything.",
        discussion: """
            Reads the file as `edge-agent run` would — with the FEDDRIFT_AGENT_… environment overrides, \
            strictly (an unknown key is an error naming the closest known one; a wrong type or range names the \
            key, the value and what is allowed) — checks that the aggregator's public key, this agent's keys, \
            the catalog and any pinned secure-aggregation peers read, and prints what the agent will run with. \
            Exit status 0 when it would start, 1 otherwise.

            Example:
              edge-agent check-config --config configs/agent-1.yaml
              FEDDRIFT_AGENT_PRIVACY__EPSILON=4 edge-agent check-config --config configs/agent-1.yaml
            """
    )

    @Option(name: .long, help: "The agent's YAML configuration.")
    var config: String

    func run() throws {
        let configuration = try EdgeAgentConfiguration.load(path: config)
        try configuration.validate()
        var problems: [String] = []
        func check(_ what: String, _ body: () throws -> Void) {
            do { try body() } catch { problems.append("\(what): \(error)") }
        }
        check("aggregator_public_key_file") { _ = try KeyDirectory.readPublicIdentity(file: configuration.aggregatorPublicKeyFile) }
        check("key_directory") { _ = try KeyDirectory(path: configuration.keyDirectory).readIdentity() }
        if let catalog = configuration.catalog { check("catalog") { _ = try CategoryCatalog.read(from: catalog) } }
        else { problems.append("catalog: not set (training needs the federation's catalog)") }
        if let kafka = configuration.kafka { check("kafka") { _ = try kafka.consumerProperties() } }
        for peer in configuration.secureAggregationPeers ?? [] {
            check("secure_aggregation_peers") { _ = try KeyDirectory.readPublicIdentity(file: peer) }
        }
        for door in configuration.doors {
            for client in door.clients {
                check("\(door.clientsKey) '\(client.id)'") { _ = try KeyDirectory.readPublicIdentity(file: client.publicKeyFile) }
            }
        }
        let doors = configuration.doors.map { door in
            "\(door.key) \(door.endpoint): " + (door.secure ? "CURVE, \(door.clients.count) enrolled clients" : "INSECURE plain (insecure_loopback)")
        }
        let privacy = configuration.nonPrivate ? "NON-PRIVATE"
            : configuration.privacy.map { "ε = \($0.epsilon) at δ = \($0.delta), floor z ≥ \($0.floor.minNoiseMultiplier), q ≤ \($0.floor.maxSamplingRate)" }
                ?? "no budget"
        print("""
            \(config): valid.
              id \(configuration.id); aggregator \(configuration.aggregatorEndpoints.joined(separator: " | ")), announcements \(configuration.announcementEndpoints.joined(separator: " | "))
              data \(configuration.dataDirectory); ingest \(configuration.ingest ?? "none"); \
            kafka \(configuration.kafka.map { "\($0.topic) at \($0.brokers), group \($0.group)" } ?? "none"); alerts \(configuration.alerts.publish ?? "not published")
              privacy: \(privacy)
              secure aggregation: \(configuration.secureAggregationPeers.map { "\($0.count) pinned peers" } ?? "rosters taken as the aggregator sends them")
              sockets: \(doors.isEmpty ? "none besides the link to the aggregator" : doors.joined(separator: "; "))
            """)
        guard problems.isEmpty else {
            for problem in problems { print("  problem: \(problem)") }
            throw ExitCode(1)
        }
    }
}
