/// An edge agent's configuration (`configs/agent-1.yaml`).
///
/// Keys (YAML, snake_case):
/// - `id` (string, required): this agent's enrolled id; must match the aggregator's allow-list.
/// - `aggregator` (endpoint, default `tcp://127.0.0.1:7700`): the aggregator's agent-facing socket.
/// - `aggregator_public_key_file` (path, required): the aggregator's `identity.public`; CURVE
///   refuses any server without this key, and updates are sealed to it.
/// - `key_directory` (path, required, **secret**): this agent's `identity.secret` and `identity.public`.
/// - `max_message_bytes` (integer, default 64 MiB).
///
/// Relative paths are resolved against the configuration file's directory.
package struct EdgeAgentConfiguration: Sendable, Decodable {
    package var id: String
    package var aggregator: String = "tcp://127.0.0.1:7700"
    package var aggregatorPublicKeyFile: String
    package var keyDirectory: String
    package var maxMessageBytes: Int = 64 << 20

    enum CodingKeys: String, CodingKey {
        case id, aggregator
        case aggregatorPublicKeyFile = "aggregator_public_key_file"
        case keyDirectory = "key_directory"
        case maxMessageBytes = "max_message_bytes"
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        aggregator = try container.decodeIfPresent(String.self, forKey: .aggregator) ?? aggregator
        aggregatorPublicKeyFile = try container.decode(String.self, forKey: .aggregatorPublicKeyFile)
        keyDirectory = try container.decode(String.self, forKey: .keyDirectory)
        maxMessageBytes = try container.decodeIfPresent(Int.self, forKey: .maxMessageBytes) ?? maxMessageBytes
    }

    package static func load(path: String) throws(ConfigError) -> EdgeAgentConfiguration {
        var configuration = try ConfigurationFile.load(EdgeAgentConfiguration.self, from: path)
        configuration.keyDirectory = ConfigurationFile.resolve(configuration.keyDirectory, relativeTo: path)
        configuration.aggregatorPublicKeyFile = ConfigurationFile.resolve(configuration.aggregatorPublicKeyFile,
                                                                          relativeTo: path)
        try configuration.validate()
        return configuration
    }

    package func validate() throws(ConfigError) {
        guard !id.isEmpty, id.utf8.count <= 64 else {
            throw .invalidValue(key: "id", value: id, reason: "must be 1 to 64 bytes")
        }
        try ConfigurationFile.validateEndpoint(aggregator, key: "aggregator")
    }
}
