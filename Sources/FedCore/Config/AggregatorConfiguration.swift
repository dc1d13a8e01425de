/// The aggregator's configuration (`configs/aggregator.yaml`).
///
/// Keys (YAML, snake_case):
/// - `id` (string, default `aggregator`): the name agents see in welcomes and logs.
/// - `listen` (endpoint, default `tcp://127.0.0.1:7700`): the agent-facing ROUTER; CURVE-encrypted,
///   only enrolled agent keys are admitted.
/// - `key_directory` (path, required, **secret**): holds `identity.secret` (0600) and `identity.public`.
/// - `max_message_bytes` (integer, default 64 MiB): larger inbound messages drop the sender's connection.
/// - `agents` (list, required): the allow-list, each with `id` and `public_key_file` (the agent's
///   `identity.public`). Only these agents can connect or have envelopes opened.
///
/// Relative paths are resolved against the configuration file's directory.
package struct AggregatorConfiguration: Sendable, Decodable {
    package struct EnrolledAgent: Sendable, Decodable {
        package var id: String
        package var publicKeyFile: String
        enum CodingKeys: String, CodingKey {
            case id
            case publicKeyFile = "public_key_file"
        }
    }

    package var id: String = "aggregator"
    package var listen: String = "tcp://127.0.0.1:7700"
    package var keyDirectory: String
    package var maxMessageBytes: Int = 64 << 20
    package var agents: [EnrolledAgent]

    enum CodingKeys: String, CodingKey {
        case id, listen, agents
        case keyDirectory = "key_directory"
        case maxMessageBytes = "max_message_bytes"
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decodeIfPresent(String.self, forKey: .id) ?? id
        listen = try container.decodeIfPresent(String.self, forKey: .listen) ?? listen
        keyDirectory = try container.decode(String.self, forKey: .keyDirectory)
        maxMessageBytes = try container.decodeIfPresent(Int.self, forKey: .maxMessageBytes) ?? maxMessageBytes
        agents = try container.decode([EnrolledAgent].self, forKey: .agents)
    }

    /// Loads and validates `path`, resolving relative paths against it.
    package static func load(path: String) throws(ConfigError) -> AggregatorConfiguration {
        var configuration = try ConfigurationFile.load(AggregatorConfiguration.self, from: path)
        configuration.keyDirectory = ConfigurationFile.resolve(configuration.keyDirectory, relativeTo: path)
        for index in configuration.agents.indices {
            configuration.agents[index].publicKeyFile = ConfigurationFile.resolve(
                configuration.agents[index].publicKeyFile, relativeTo: path)
        }
        try configuration.validate()
        return configuration
    }

    package func validate() throws(ConfigError) {
        try ConfigurationFile.validateEndpoint(listen, key: "listen")
        guard maxMessageBytes >= 64 << 10 else {
            throw .invalidValue(key: "max_message_bytes", value: "\(maxMessageBytes)", reason: "must be at least 65536")
        }
        guard !agents.isEmpty else {
            throw .invalidValue(key: "agents", value: "[]", reason: "enroll at least one agent (id + public_key_file)")
        }
        var seen = Set<String>()
        for agent in agents {
            guard !agent.id.isEmpty, agent.id.utf8.count <= 64 else {
                throw .invalidValue(key: "agents.id", value: agent.id, reason: "must be 1 to 64 bytes")
            }
            guard seen.insert(agent.id).inserted else {
                throw .invalidValue(key: "agents.id", value: agent.id, reason: "enrolled twice")
            }
        }
    }
}
