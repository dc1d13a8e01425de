@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

@Suite("Configuration files")
struct ConfigurationTests {
    private static let configs = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../configs").standardized

    @Test("The example configurations in configs/ load and validate")
    func examples() throws {
        let aggregator = try AggregatorConfiguration.load(path: Self.configs.appendingPathComponent("aggregator.yaml").path)
        #expect(aggregator.agents.map(\.id) == ["region-1", "region-2", "region-3"])
        #expect(aggregator.rounds.minAgents == 2 && aggregator.model.shape == .small)
        #expect(aggregator.stateDirectory.hasSuffix("state/aggregator"))
        #expect(!aggregator.nonPrivate && aggregator.rounds.hyperparameters.noiseMultiplier > 0, "private by default")
        for index in 1...3 {
            let agent = try EdgeAgentConfiguration.load(path: Self.configs.appendingPathComponent("agent-\(index).yaml").path)
            #expect(agent.id == "region-\(index)")
            #expect(agent.catalog?.hasSuffix("state/catalog.txt") == true)
            #expect(agent.announcements == aggregator.announce)
            #expect(!agent.nonPrivate && agent.floor != nil && (agent.privacy?.epsilon ?? .infinity) <= 8,
                    "every example agent has a budget and a floor")
            // The example agents take part in the example aggregator's rounds (secure: their own share too).
            let h = aggregator.announcedHyperparameters
            #expect(h.secureThreshold == 2 && h.distributedRelease != nil, "three agents: secure aggregation by default")
            let plan = RoundReleasePlan(samplingRate: h.samplingRate, noiseMultiplier: h.noiseMultiplier,
                                        alertRateNoiseMultiplier: h.histogramNoiseMultiplier,
                                        evaluationNoiseMultiplier: agent.privacy?.evaluationNoiseMultiplier,
                                        dimension: aggregator.model.shape?.layout.count, secure: h.distributedRelease)
            #expect(agent.floor?.refusal(of: plan) == nil, "\(agent.floor?.refusal(of: plan) ?? "")")
        }
    }

    @Test("memory_limit_mib: absent is half the memory available (machine or cgroup); resident memory reads as a plausible figure")
    func memoryLimit() throws {
        let available = ProcessMemory.availableBytes()
        #expect(available > 64 << 20 && available <= Int(ProcessInfo.processInfo.physicalMemory))
        #expect(ProcessMemory.defaultLimitMiB == max(256, available / 2 / (1 << 20)))
        let resident = try #require(ProcessMemory.residentBytes())
        #expect(resident > 1 << 20 && resident < available, "\(resident) bytes resident")
    }

    @Test("Out-of-range round settings are refused with the key named")
    func refusals() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let cases = [
            ("rounds: {min_agents: 3}", "rounds.min_agents"),
            ("rounds: {sampling_rate: 1.5}", "rounds.sampling_rate"),
            ("model: {preset: huge}", "model.preset"),
            ("server_optimizer: {kind: rmsprop}", "server_optimizer.kind"),
            ("announce: tcp://127.0.0.1:7700", "announce"),
            // Values that would trap later (a Double → Int64 conversion of the deadline) are refused at load.
            ("rounds: {timeout_seconds: 1e300}", "rounds.timeout_seconds"),
            ("listen: tcp://nonsense", "listen"),
            ("memory_limit_mib: 10", "memory_limit_mib"),
            ("memory_limit_mib: 9007199254740991", "memory_limit_mib"),
            ("""
             trend_sinks: [{name: m, webhook: {url: "http://127.0.0.1:9/t", secret_file: s}, retry_max_seconds: 1e300}]
             """, "trend_sinks[0].retry_max_seconds"),
        ]
        for (line, key) in cases {
            let path = directory.appendingPathComponent("aggregator.yaml").path
            try """
                key_directory: keys
                non_private: true
                agents: [{id: a, public_key_file: a.public}, {id: b, public_key_file: b.public}]
                \(line)

                """.write(toFile: path, atomically: true, encoding: .utf8)
            #expect {
                _ = try AggregatorConfiguration.load(path: path)
            } throws: { error in
                guard case let ConfigError.invalidValue(found, _, _) = error else { return false }
                return found == key
            }
        }
    }

    @Test("catalog: names trend warnings' categories; a catalog of another size than the model's, or none at the path, is refused naming the key")
    func aggregatorCatalog() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func load(_ catalog: CategoryCatalog?) throws -> CategoryCatalog? {
            if let catalog { try catalog.text().write(toFile: directory.appendingPathComponent("catalog.txt").path, atomically: true, encoding: .utf8) }
            let path = directory.appendingPathComponent("aggregator.yaml").path
            try """
                key_directory: keys
                non_private: true
                model: {preset: small}
                catalog: catalog.txt
                agents: [{id: a, public_key_file: a.public}, {id: b, public_key_file: b.public}]

                """.write(toFile: path, atomically: true, encoding: .utf8)
            return try AggregatorConfiguration.load(path: path, environment: [:]).loadCatalog()
        }
        func refused(_ catalog: CategoryCatalog?) -> Bool {
            do {
                _ = try load(catalog)
                return false
            } catch {
                guard case let ConfigError.invalidValue(key, _, _) = error else { return false }
                return key == "catalog"
            }
        }
        #expect(refused(nil), "no file at the path")
        let classes = try #require(LSTMShape.preset(named: "small")).categories
        #expect(refused(CategoryCatalog(itemsPerCategory: [1_000: 5, 8_919: 3], categories: classes / 2)))
        let loaded = try #require(try load(CategoryCatalog(itemsPerCategory: [1_000: 5, 8_919: 3], categories: classes)))
        #expect(loaded.category(atModelIndex: 0) == 1_000 && loaded.category(atModelIndex: 1) == 8_919)
        #expect(loaded.category(atModelIndex: UInt64(classes - 1)) == nil, "the out-of-vocabulary index names no category")
    }

    @Test("Endpoints are parsed as real addresses: bad hosts, ports and transports are refused; wildcards only where a socket binds")
    func endpoints() throws {
        for good in ["tcp://127.0.0.1:7700", "tcp://[::1]:7700", "tcp://agg-1.example.com:7700", "ipc:///tmp/feddrift.ipc",
                     "inproc://ingest", "tcp://10.0.0.7:65535"] {
            #expect(throws: Never.self) { try ConfigurationFile.validateEndpoint(good, key: "k", bind: false) }
        }
        for bad in ["tcp://nonsense", "tcp://127.0.0.1", "tcp://127.0.0.1:0", "tcp://127.0.0.1:70000", "tcp://256.1.1.1:7700",
                    "tcp://1.2.3:7700", "tcp://host_name:7700", "udp://127.0.0.1:7700", "127.0.0.1:7700", "tcp://:7700",
                    "tcp://[::1:7700", "ipc://", "tcp://127.0.0.1:77a0"] {
            #expect(throws: ConfigError.self, "\(bad)") { try ConfigurationFile.validateEndpoint(bad, key: "k", bind: true) }
        }
        for wildcard in ["tcp://*:7700", "tcp://0.0.0.0:7700", "tcp://[::]:7700", "tcp://127.0.0.1:*"] {
            #expect(try ConfigurationFile.validateEndpoint(wildcard, key: "k", bind: true).isWildcard)
            #expect(throws: ConfigError.self, "\(wildcard)") { try ConfigurationFile.validateEndpoint(wildcard, key: "k", bind: false) }
        }
        let local = try ["tcp://127.0.0.1:1", "tcp://127.8.0.1:1", "tcp://[::1]:1", "tcp://localhost:1", "ipc:///x", "inproc://x"]
            .map { try ZMQEndpoint(parsing: $0).isLocal }
        let remote = try ["tcp://10.0.0.1:1", "tcp://*:1", "tcp://0.0.0.0:1", "tcp://example.com:1", "tcp://[fe80::1]:1"]
            .map { try ZMQEndpoint(parsing: $0).isLocal }
        #expect(local.allSatisfy { $0 } && remote.allSatisfy { !$0 })
    }

    /// An agent configuration of the common keys (NON-PRIVATE) and `lines`, written in `directory` and loaded.
    static func loadAgent(_ lines: String, in directory: URL) throws -> EdgeAgentConfiguration {
        let path = directory.appendingPathComponent("agent.yaml").path
        try "id: region-1\nkey_directory: keys\naggregator_public_key_file: aggregator.public\nnon_private: true\n"
            .appending(lines).write(toFile: path, atomically: true, encoding: .utf8)
        return try EdgeAgentConfiguration.load(path: path, environment: [:])
    }

    /// The key ``loadAgent(_:in:)`` refuses `lines` for; nil when they load (another error: its text).
    static func refusedAgentKey(_ lines: String, in directory: URL) -> String? {
        do {
            _ = try loadAgent(lines, in: directory)
            return nil
        } catch {
            guard case let ConfigError.invalidValue(key, _, _) = error else { return "\(error)" }
            return key
        }
    }

    @Test("No door without a key: an agent socket without enrolled clients is refused unless insecure_loopback on a loopback address")
    func agentDoors() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func load(_ lines: String) throws -> EdgeAgentConfiguration { try Self.loadAgent(lines, in: directory) }
        func refusedKey(_ lines: String) -> String? { Self.refusedAgentKey(lines, in: directory) }
        // Each socket without clients, plain by default: refused, naming the clients list to fill.
        #expect(refusedKey("ingest: tcp://127.0.0.1:7710\n") == "clients.producers")
        #expect(refusedKey("alerts: {publish: tcp://127.0.0.1:7720}\n") == "clients.alert_consumers")
        #expect(refusedKey("alerts: {recommend: tcp://127.0.0.1:7730}\n") == "clients.query_clients")
        // insecure_loopback: only on loopback.
        #expect(refusedKey("ingest: tcp://0.0.0.0:7710\ninsecure_loopback: true\n") == "ingest")
        #expect(refusedKey("ingest: tcp://10.1.2.3:7710\ninsecure_loopback: true\n") == "ingest")
        let insecure = try load("ingest: tcp://127.0.0.1:7710\ninsecure_loopback: true\n")
        #expect(insecure.doors.map(\.secure) == [false])
        // Enrolled clients: CURVE, on any address; the same client twice is refused.
        let secure = try load("""
            ingest: tcp://0.0.0.0:7710
            alerts: {publish: "tcp://*:7720", recommend: "tcp://10.1.2.3:7730"}
            clients:
              producers: [{id: shop, public_key_file: keys-shop.public}]
              alert_consumers: [{id: crm, public_key_file: keys-crm.public}]
              query_clients: [{id: site, public_key_file: keys-site.public}]

            """)
        #expect(secure.doors.map(\.domain) == ["ingest", "alerts", "recommend"] && secure.doors.allSatisfy(\.secure))
        #expect(secure.clients.producers.first?.publicKeyFile == directory.appendingPathComponent("keys-shop.public").path)
        #expect(refusedKey("""
            ingest: tcp://127.0.0.1:7710
            clients: {producers: [{id: shop, public_key_file: a.public}, {id: shop, public_key_file: b.public}]}

            """) == "clients.producers[1]")
        #expect(refusedKey("ingest: tcp://nonsense\nclients: {producers: [{id: shop, public_key_file: a.public}]}\n") == "ingest")
    }

    @Test("aggregator and announcements: one endpoint, or a highly available pair in the same order; duplicates, mismatched counts and bad endpoints refused")
    func aggregatorPair() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func load(_ lines: String) throws -> EdgeAgentConfiguration { try Self.loadAgent(lines, in: directory) }
        func refusedKey(_ lines: String) -> String? { Self.refusedAgentKey(lines, in: directory) }
        let one = try load("aggregator: tcp://127.0.0.1:7700\nannouncements: tcp://127.0.0.1:7701\n")
        #expect(one.aggregatorEndpoints == ["tcp://127.0.0.1:7700"] && one.announcementEndpoints == ["tcp://127.0.0.1:7701"])
        #expect(AgentLink.options(configuration: one, identity: NodeIdentity(), aggregator: NodeIdentity().publicIdentity)
            .immediate == false)
        let pair = try load("aggregator: [tcp://agg-a:7700, tcp://agg-b:7700]\nannouncements: [tcp://agg-a:7701, tcp://agg-b:7701]\n")
        #expect(pair.aggregatorEndpoints == ["tcp://agg-a:7700", "tcp://agg-b:7700"] && pair.aggregator == "tcp://agg-a:7700")
        let options = AgentLink.options(configuration: pair, identity: NodeIdentity(), aggregator: NodeIdentity().publicIdentity)
        #expect(options.immediate && options.reconnectIntervalMaxMilliseconds == 1_000,
                "a pair's messages go only over a completed handshake (the leader's), and a new leader is found within 1 s")
        #expect(refusedKey("aggregator: [tcp://agg-a:7700, tcp://agg-b:7700]\n") == "announcements")
        #expect(refusedKey("aggregator: [tcp://agg-a:7700, tcp://agg-a:7700]\nannouncements: [tcp://a:1, tcp://b:1]\n")
                == "aggregator")
        #expect(refusedKey("aggregator: [tcp://agg-a:7700, nonsense]\nannouncements: [tcp://a:1, tcp://b:1]\n") == "aggregator")
        #expect(refusedKey("aggregator: []\n") == "aggregator")
    }

    @Test("Two enrolled agents with one key are refused naming both (the allow-list could not tell them apart); a key path that is a FIFO is refused at once, not waited on")
    func duplicateKeysAndSpecialFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let one = NodeIdentity(), other = NodeIdentity()
        let (a, b) = (one.publicIdentity, other.publicIdentity)
        #expect(throws: Never.self) { try AggregatorConfiguration.checkDistinctKeys([("r1", "r1.public", a), ("r2", "r2.public", b)]) }
        #expect {
            try AggregatorConfiguration.checkDistinctKeys([("r1", "r1.public", a), ("r2", "copy.public", a)])
        } throws: { error in
            guard case let ConfigError.invalidValue(key, value, reason) = error else { return false }
            return key == "agents" && value == "copy.public" && reason.contains("'r1' and 'r2'")
        }
        let fifo = directory.appendingPathComponent("identity.public").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let started = ContinuousClock.now
        #expect(throws: KeyFileError.self) { _ = try KeyDirectory.readPublicIdentity(file: fifo) }
        #expect(ContinuousClock.now - started < .seconds(2), "refused at once")
    }

    @Test("Strict: a misspelt key is an error naming it, its line and the closest known key, at any depth; the same file spelt right loads")
    func unknownKeys() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("aggregator.yaml").path
        func load(_ extra: String) throws -> AggregatorConfiguration {
            try "key_directory: keys\nnon_private: true\nagents: [{id: a, public_key_file: a.public}]\n\(extra)\n"
                .write(toFile: path, atomically: true, encoding: .utf8)
            return try AggregatorConfiguration.load(path: path, environment: [:])
        }
        let cases: [(String, String, String?, Int)] = [
            ("privasy: {epsilon: 1}", "privasy", nil, 4),                       // no such section at all
            ("rounds:\n  min_agent: 1", "rounds.min_agent", "min_agents", 5),
            ("drift: {histogram_noise: 4}", "drift.histogram_noise", "histogram_noise_multiplier", 4),
            ("secure_aggregation: {enabeld: false}", "secure_aggregation.enabeld", "enabled", 4),
            ("non_privat: true", "non_privat", "non_private", 4),
            ("trends: {warmup: 3}", "trends.warmup", "warm_up", 4),
        ]
        for (extra, key, suggestion, line) in cases {
            #expect {
                _ = try load(extra)
            } throws: { error in
                guard case let ConfigError.unknownKey(_, found, suggested, foundLine, allowed) = error else { return false }
                return found == key && suggested == suggestion && foundLine == line && !allowed.isEmpty
            }
        }
        // Control: spelt right, every one of them loads.
        let good = try load("rounds:\n  min_agents: 1\ndrift: {histogram_noise_multiplier: 4}\nsecure_aggregation: {enabled: false}\n"
            + "trends: {warm_up: 3, threshold: 5}")
        #expect(good.rounds.minAgents == 1 && good.drift.histogramNoiseMultiplier == 4 && !good.secureAggregationEnabled)
        #expect(good.trends.warmUp == 3 && good.trends.threshold == 5 && good.trends.minimumChange == 0.5)
        #expect(throws: ConfigError.self) { _ = try load("trends: {warm_up: 0}") }
        // The detector's settings (YAML in an agent's alerts, or JSON from fit-drift) are strict too.
        #expect(throws: UnknownKeyError.self) {
            try JSONDecoder().decode(SwitchDetector.Settings.self, from: Data(#"{"hazrd": 0.1}"#.utf8))
        }
    }

    @Test("A value of the wrong type names the key, the value found, what is expected and its line; YAML syntax errors give line and column")
    func typeAndSyntaxErrors() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("aggregator.yaml").path
        try "key_directory: keys\nnon_private: true\nagents: [{id: a, public_key_file: a.public}]\nrounds: {min_agents: two}\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        #expect {
            _ = try AggregatorConfiguration.load(path: path, environment: [:])
        } throws: { error in
            guard case let ConfigError.invalidValue(key, value, reason) = error else { return false }
            return key == "rounds.min_agents" && value == "two" && reason.contains("an integer") && reason.contains("line 4")
        }
        try "key_directory: keys\nagents: [\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect {
            _ = try AggregatorConfiguration.load(path: path, environment: [:])
        } throws: { error in
            guard case let ConfigError.invalid(_, reason) = error else { return false }
            return reason.hasPrefix("3:1:")
        }
    }

    @Test("Environment variables override keys at any depth (FEDDRIFT_AGGREGATOR_ROUNDS__MIN_AGENTS); an override of an unknown key is refused like one in the file")
    func environmentOverrides() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("aggregator.yaml").path
        try "key_directory: keys\nnon_private: true\nagents: [{id: a, public_key_file: a.public}, {id: b, public_key_file: b.public}]\nrounds: {min_agents: 1}\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        let plain = try AggregatorConfiguration.load(path: path, environment: [:])
        #expect(plain.rounds.minAgents == 1 && plain.rounds.timeoutSeconds == 60)
        let overridden = try AggregatorConfiguration.load(path: path, environment: [
            "FEDDRIFT_AGGREGATOR_ROUNDS__MIN_AGENTS": "2", "FEDDRIFT_AGGREGATOR_ROUNDS__TIMEOUT_SECONDS": "5.5",
            "FEDDRIFT_AGGREGATOR_DRIFT__HISTOGRAM_NOISE_MULTIPLIER": "3", "FEDDRIFT_AGENT_PRIVACY__EPSILON": "1",
            "HOME": "/root",
        ])
        #expect(overridden.rounds.minAgents == 2 && overridden.rounds.timeoutSeconds == 5.5
                && overridden.drift.histogramNoiseMultiplier == 3)
        #expect {
            _ = try AggregatorConfiguration.load(path: path, environment: ["FEDDRIFT_AGGREGATOR_ROUNDS__MIN_AGENS": "2"])
        } throws: { error in
            guard case let ConfigError.unknownKey(_, key, suggestion, _, _) = error else { return false }
            return key == "rounds.min_agens" && suggestion == "min_agents"
        }
    }

    @Test("Fail closed: no noise, no budget or a budget beside non_private are refused with the key named")
    func privacyRefusals() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let aggregatorPath = directory.appendingPathComponent("aggregator.yaml").path
        func aggregator(_ lines: String) throws -> AggregatorConfiguration {
            try "key_directory: keys\nagents: [{id: a, public_key_file: a.public}]\n\(lines)\n"
                .write(toFile: aggregatorPath, atomically: true, encoding: .utf8)
            return try AggregatorConfiguration.load(path: aggregatorPath)
        }
        func refused(_ key: String, _ load: () throws -> Void) {
            #expect { try load() } throws: { error in
                guard case let ConfigError.invalidValue(found, _, _) = error else { return false }
                return found == key
            }
        }
        refused("rounds.noise_multiplier") { _ = try aggregator("rounds: {noise_multiplier: 0}") }
        refused("rounds.expected_users") { _ = try aggregator("") }  // default z = 1 needs the fixed denominator
        let defaults = try aggregator("rounds: {expected_users: 1000}")
        #expect(defaults.rounds.hyperparameters.noiseMultiplier == 1 && !defaults.isNonPrivate)
        let open = try aggregator("non_private: true")
        #expect(open.rounds.hyperparameters.noiseMultiplier == 0 && open.isNonPrivate
                && open.privacySummary["mode"] == "NON-PRIVATE")

        let agentPath = directory.appendingPathComponent("agent.yaml").path
        func agent(_ lines: String) throws -> EdgeAgentConfiguration {
            try "id: a\nkey_directory: keys\naggregator_public_key_file: a.public\n\(lines)\n"
                .write(toFile: agentPath, atomically: true, encoding: .utf8)
            return try EdgeAgentConfiguration.load(path: agentPath)
        }
        refused("privacy") { _ = try agent("") }
        refused("non_private") { _ = try agent("non_private: true\nprivacy: {epsilon: 8, delta: 1.0e-6}") }
        refused("privacy") { _ = try agent("privacy: {epsilon: .inf, delta: 1.0e-6}") }
        refused("privacy.min_noise_multiplier") { _ = try agent("privacy: {epsilon: 8, delta: 1.0e-6, min_noise_multiplier: 0}") }
        refused("privacy.evaluation_noise_multiplier") {
            _ = try agent("privacy: {epsilon: 8, delta: 1.0e-6, evaluation_noise_multiplier: 0.1}")
        }
        let budgeted = try agent("privacy: {epsilon: 8, delta: 1.0e-6, max_sampling_rate: 0.2}")
        #expect(budgeted.floor == PrivacyFloor(minNoiseMultiplier: 0.5, maxSamplingRate: 0.2))
        let nonPrivate = try agent("non_private: true")
        #expect(nonPrivate.floor == nil && nonPrivate.budget.epsilon == .infinity)
    }

    @Test("An agent loads fitted detector settings from alerts.detector_file; a bad file or both keys are refused")
    func detectorFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("agent.yaml").path
        func write(_ alerts: String) throws {
            try """
                id: region-1
                key_directory: keys
                aggregator_public_key_file: aggregator.public
                non_private: true
                alerts: \(alerts)

                """.write(toFile: path, atomically: true, encoding: .utf8)
        }
        try #"{"novelty_concentration": 6, "hazard": 0.01}"#.write(
            toFile: directory.appendingPathComponent("fitted.json").path, atomically: true, encoding: .utf8)
        try write("{detector_file: fitted.json}")
        let loaded = try EdgeAgentConfiguration.load(path: path)
        #expect(loaded.alerts.detector.noveltyConcentration == 6 && loaded.alerts.detector.hazard == 0.01)
        #expect(loaded.alerts.detector.runLengths == SwitchDetector.Settings().runLengths)
        try #"{"hazard": 2}"#.write(toFile: directory.appendingPathComponent("bad.json").path, atomically: true,
                                       encoding: .utf8)
        for alerts in ["{detector_file: bad.json}", "{detector_file: missing.json}"] {
            try write(alerts)
            #expect {
                _ = try EdgeAgentConfiguration.load(path: path)
            } throws: { error in
                guard case let ConfigError.invalidValue(key, _, _) = error else { return false }
                return key == "alerts.detector_file"
            }
        }
        try write("{detector_file: fitted.json, detector: {hazard: 0.01}}")
        #expect(throws: ConfigError.self) { _ = try EdgeAgentConfiguration.load(path: path) }
    }
}
