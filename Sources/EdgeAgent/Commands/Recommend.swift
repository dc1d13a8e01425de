import ArgumentParser
import FedIO
import FedLogic
import FedNode
import FedTools
import Foundation

struct Recommend: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Top-N items for a shopper now: the model's next-category probability × regional item popularity.",
        discussion: """
            Asks the running agent on its alerts.recommend socket (REQ), which answers from the shopper's live \
            state. The same query is served to any REQ client the agent enrolled (clients.query_clients, CURVE \
            with the agent's identity.public as server key): send {"user": U, "n": N} as JSON. --key is this \
            client's key directory (edge-agent keygen); without it the query goes plain, which only an agent \
            with insecure_loopback: true answers.
            """
    )

    @Option(name: .long, help: "The agent's YAML configuration (its alerts.recommend endpoint is used).")
    var config: String

    @Option(name: .long, help: "The shopper's user id.")
    var user: UInt64

    @Option(name: .long, help: "How many items.")
    var n = 10

    @Option(name: .long, help: "This query client's key directory (edge-agent keygen), enrolled under clients.query_clients.")
    var key: String?

    func run() async throws {
        let configuration = try EdgeAgentConfiguration.load(path: config)
        guard let endpoint = configuration.alerts.recommend else {
            throw ValidationError("\(config) has no alerts.recommend endpoint: set one (e.g. tcp://127.0.0.1:7730) and restart the agent")
        }
        let context = try ZMQContext()
        let keys = try key.map { try KeyDirectory(path: $0).readIdentity() }
        let server = try KeyDirectory(path: configuration.keyDirectory).readPublicIdentity().box
        // A DEALER speaking the REQ envelope (empty delimiter, then the body): what any REQ client sends.
        let channel = try await DoorClient.connect(.dealer, to: endpoint, keys: keys, serverKey: server, context: context)
        defer { channel.close() }
        try await channel.send([[], Array(try JSONEncoder().encode(RecommendationQuery(user: user, n: n)))])
        guard let reply = try await channel.receive(timeout: .seconds(5)) else {
            throw ValidationError("no answer from \(endpoint) within 5 s: is the agent running?")
        }
        let answer = try JSONDecoder().decode(RecommendationAnswer.self, from: Data(reply.frames.last ?? []))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(answer), as: UTF8.self))
    }
}
