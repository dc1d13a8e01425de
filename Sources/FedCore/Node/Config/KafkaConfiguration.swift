import FedLogic
import Foundation

/// `kafka:` in an agent's configuration: consume the region's behaviour events from a Kafka topic as one
/// shard of a consumer group (docs/OPERATIONS.md, "Sharded regions on Kafka").
/// - `brokers` (required): the bootstrap servers, `host:port[,host:port…]`.
/// - `topic` (required): the topic; its records are keyed by the shopper's id (decimal), so that every
///   shopper's events land in one partition and so in one shard. A record whose key is not its events' user
///   is refused and counted.
/// - `group` (required): the consumer group; every shard of a region uses the same one.
/// - `format` (`jsonl` or `taobao`, default the agent's `ingest_format`): one or more rows per record.
/// - `batch` (integer 1…100,000, default 1,000): records stored per transaction before their offsets are committed.
/// - `properties` (map, optional): librdkafka properties (`security.protocol`, `sasl.mechanism`,
///   `sasl.username`, `ssl.ca.location`, …). `bootstrap.servers`, `group.id` and the commit settings are set
///   by the agent and refused here.
/// - `password_file` (path, optional, **secret**): its content becomes `sasl.password`, so the password is in
///   no configuration file.
/// - `insecure_plaintext` (default false): records carry raw shopper behaviour, so a broker that is not on
///   loopback must be reached over TLS (`security.protocol: ssl` or `sasl_ssl`); `true` allows plaintext.
package struct KafkaConfiguration: Sendable, Decodable, Equatable {
    package var brokers: String
    package var topic: String
    package var group: String
    package var format: String?
    package var batch = 1000
    package var properties: [String: String] = [:]
    package var passwordFile: String?
    package var insecurePlaintext = false

    package init(brokers: String, topic: String, group: String) {
        (self.brokers, self.topic, self.group) = (brokers, topic, group)
    }

    package init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        brokers = try c.decode(String.self, forKey: .brokers)
        topic = try c.decode(String.self, forKey: .topic)
        group = try c.decode(String.self, forKey: .group)
        format = try c.decodeIfPresent(String.self, forKey: .format)
        batch = try c.decodeIfPresent(Int.self, forKey: .batch) ?? batch
        properties = try c.decodeIfPresent([String: String].self, forKey: .properties) ?? [:]
        passwordFile = try c.decodeIfPresent(String.self, forKey: .passwordFile)
        insecurePlaintext = try c.decodeIfPresent(Bool.self, forKey: .insecurePlaintext) ?? false
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case brokers, topic, group, format, batch, properties
        case passwordFile = "password_file", insecurePlaintext = "insecure_plaintext"
    }

    /// Properties the agent sets itself: a configuration that sets them would break what it promises.
    static let reserved: Set<String> = [
        "bootstrap.servers", "metadata.broker.list", "group.id", "enable.auto.commit", "enable.auto.offset.store",
        "sasl.password", "enable.partition.eof",
    ]

    package func validate(ingestFormat: String) throws(ConfigError) {
        let hosts = brokers.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !hosts.isEmpty, hosts.allSatisfy({ Self.host(of: $0) != nil }) else {
            throw .invalidValue(key: "kafka.brokers", value: brokers, reason: "expected host:port[,host:port…]")
        }
        guard !topic.isEmpty, topic.utf8.count <= 249,
              topic.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) else {
            throw .invalidValue(key: "kafka.topic", value: topic, reason: "a Kafka topic name: 1 to 249 of [A-Za-z0-9._-]")
        }
        guard !group.isEmpty else { throw .invalidValue(key: "kafka.group", value: group, reason: "must not be empty") }
        guard EventFormat(rawValue: format ?? ingestFormat) != nil else {
            throw .invalidValue(key: "kafka.format", value: format ?? ingestFormat, reason: "must be taobao or jsonl")
        }
        guard (1...100_000).contains(batch) else {
            throw .invalidValue(key: "kafka.batch", value: "\(batch)", reason: "must be 1 to 100000 records")
        }
        if let name = properties.keys.sorted().first(where: Self.reserved.contains) {
            throw .invalidValue(key: "kafka.properties.\(name)", value: properties[name] ?? "", reason: """
                set by the agent (brokers, group, manual commits after the events are durable); the password comes \
                from kafka.password_file
                """)
        }
        let encrypted = ["ssl", "sasl_ssl"].contains((properties["security.protocol"] ?? "plaintext").lowercased())
        let local = hosts.allSatisfy { ["127.0.0.1", "localhost", "::1", "[::1]"].contains(Self.host(of: $0) ?? "") }
        guard encrypted || local || insecurePlaintext else {
            throw .invalidValue(key: "kafka.properties.security.protocol", value: properties["security.protocol"] ?? "plaintext",
                                reason: """
                records carry raw shopper behaviour and \(brokers) is not on loopback: use ssl or sasl_ssl \
                (with ssl.ca.location), or set kafka.insecure_plaintext: true if the network is private by other means
                """)
        }
    }

    /// The host of `host:port` (nil if malformed).
    private static func host(of broker: String) -> String? {
        guard let colon = broker.lastIndex(of: ":"), let port = Int(broker[broker.index(after: colon)...]),
              (1...65_535).contains(port), colon > broker.startIndex else { return nil }
        return String(broker[..<colon])
    }

    /// The consumer's librdkafka properties, the password read from its file.
    package func consumerProperties() throws(ConfigError) -> [String: String] {
        var result = properties
        result["bootstrap.servers"] = brokers
        result["group.id"] = group
        result["auto.offset.reset"] = result["auto.offset.reset"] ?? "earliest"
        result["client.id"] = result["client.id"] ?? "feddrift-edge-agent"
        if let passwordFile {
            guard let data = FileManager.default.contents(atPath: passwordFile) else {
                throw .invalidValue(key: "kafka.password_file", value: passwordFile, reason: "cannot read it")
            }
            result["sasl.password"] = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
        }
        return result
    }
}
