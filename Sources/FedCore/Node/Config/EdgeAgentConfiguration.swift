import FedIO
package import FedLogic
import FedModel
import Foundation

/// An edge agent's configuration (`configs/agent-1.yaml`).
///
/// Keys (YAML, snake_case):
/// - `id` (string, required): this agent's enrolled id; must match the aggregator's allow-list.
/// - `aggregator` (endpoint, default `tcp://127.0.0.1:7700`): the aggregator's agent-facing socket; for a
///   highly available pair, a list of both (`[tcp://agg-a:7700, tcp://agg-b:7700]`): the agent connects to
///   each and talks to whichever leads (only the leader binds its sockets).
/// - `aggregator_public_key_file` (path, required): the aggregator's `identity.public`; CURVE
///   refuses any server without this key, and updates are sealed to it.
/// - `key_directory` (path, required, **secret**): this agent's `identity.secret` and `identity.public`.
/// - `max_message_bytes` (integer, default 64 MiB).
/// - `memory_limit_mib` (integer ≥ 64, default half the machine's or the cgroup's memory): above this resident
///   memory the agent closes every connection on its ingest and recommendation sockets (``MemoryGuard``).
/// - `announcements` (endpoint, default `tcp://127.0.0.1:7701`): the aggregator's PUB socket (round
///   announcements, drift thresholds), over CURVE; a list of as many as `aggregator` for a pair.
/// - `data_directory` (path, default `data`): `events.sqlite` (the local event store) and `model.fdlm`
///   (the newest global model received).
/// - `catalog` (path, required to train): the shared category catalog (`aggregator catalog build`).
/// - `ingest` (endpoint, optional): a PULL socket for live events (one Taobao CSV or JSONL row per line,
///   many lines per message allowed; format from `ingest_format`, default jsonl). Bind it to a local or
///   otherwise protected address: it carries raw behaviour and is not encrypted.
/// - `kafka` (optional): consume events from a Kafka topic as one shard of a consumer group
///   (``KafkaConfiguration``); may be combined with `ingest`.
/// - `evaluation_users` (integer, default 1000): users whose most recent event is used to evaluate each
///   global model (the same users every round).
/// - `threads` (integer, default 1): training threads.
/// - `alerts` (optional): `publish` (endpoint of a PUB socket for alerts, topics `alert.<region>.<kind>`,
///   JSON bodies; default none), `recommend` (endpoint of a REP socket answering `{"user": U, "n": N}`
///   with the user's top-N items as JSON; default none), `file` (JSONL, default `data_directory/alerts.jsonl`),
///   `cold_start_threshold` (switch-detector score, default 2, used until the aggregator broadcasts one),
///   `recommendations` (items per alert, default 10), `detector` (the switch detector's settings:
///   `run_lengths`, `hazard`, `profile_decay`, `segment_decay`, `novelty_concentration`, `novelty_discount`,
///   `novelty_cap`, `recency_weight`, `recency_decay`, `recency_length`, `warm_up`, `excursion_level`,
///   `excursion_penalty`, `profile_capacity`; defaults in docs/EVALUATION.md) or `detector_file` (the same
///   keys as JSON, as `edge-agent fit-drift --out` writes them), `cold_start_churn_threshold`
///   (churn risk in nats, default 5, until the aggregator broadcasts one), `churn` (the churn detector's
///   settings: `session_gap_seconds`, `prior_sessions`, `prior_days`, `half_life_days`, `warm_up_sessions`).
///   Alerts are stored in `data_directory/alerts.sqlite` before they are published. `sinks` (list,
///   default none): webhooks and e-mail that deliver alerts to people (``AlertSinkConfiguration``,
///   docs/ALERTS.md).
/// - `privacy` (required unless `non_private: true`): `epsilon` and `delta`, this agent's lifetime
///   budget for all its releases together (model updates, evaluation reports, alert-rate counts),
///   enforced by the ledger in `data_directory/privacy.sqlite`; its own floor on the noise of every
///   release, whatever the aggregator announces: `min_noise_multiplier` (default 0.5) and
///   `max_sampling_rate` (default 0.5) — a round that breaks it is refused, logged and counted in
///   `status.json`; `evaluation_noise_multiplier` (default 0 = send no held-out evaluation; else at
///   least `min_noise_multiplier`); and `release` (`at_cutoff`, default: every round's releases leave at
///   a fixed time before the deadline, noise alone if training is not done by then; `when_ready`: as
///   soon as computed, so their timing reveals roughly how many users were sampled).
/// - `secure_aggregation_peers` (list of paths, optional): the other enrolled agents' `identity.public`
///   files. Given, this agent takes part in a secure-aggregation round only if every party of its roster
///   is one of them (each once): the aggregator cannot make up parties to isolate this agent's update.
///   Absent, the roster is taken as the aggregator sends it (enough against an honest-but-curious one).
/// - `http`: the operator endpoint, `listen`, `token_file`, `insecure_loopback` (``HTTPConfiguration``),
///   files in `data_directory`.
/// - `trends` (optional): `release` (default false) — release, each round, the shoppers active per model
///   category since the previous release, for the aggregator's demand-trend warnings; `noise_multiplier`
///   (default 4) of each count when private (``Trends``).
/// - `non_private` (boolean, default false): `true` runs the agent without differential privacy — no
///   budget, no floor, exact evaluations — labelled NON-PRIVATE in its log and status. It cannot be
///   combined with `privacy`.
///
/// Relative paths are resolved against the configuration file's directory.
package struct EdgeAgentConfiguration: Sendable, Decodable {
    package var id: String
    /// `aggregator`: one endpoint, or those of a highly available pair.
    package var aggregatorEndpoints = ["tcp://127.0.0.1:7700"]
    /// The first of `aggregatorEndpoints`; setting it replaces the list with one endpoint.
    package var aggregator: String {
        get { aggregatorEndpoints.first ?? "" }
        set { aggregatorEndpoints = [newValue] }
    }
    package var aggregatorPublicKeyFile: String
    package var keyDirectory: String
    package var maxMessageBytes: Int = 64 << 20
    /// `memory_limit_mib`: above this resident memory, the ``MemoryGuard`` closes client connections; nil: half
    /// of the memory available (``ProcessMemory/defaultLimitMiB``).
    package var memoryLimitMiB: Int?
    package var effectiveMemoryLimitMiB: Int { memoryLimitMiB ?? ProcessMemory.defaultLimitMiB }
    /// `announcements`: one endpoint, or those of a highly available pair.
    package var announcementEndpoints = ["tcp://127.0.0.1:7701"]
    /// The first of `announcementEndpoints`; setting it replaces the list with one endpoint.
    package var announcements: String {
        get { announcementEndpoints.first ?? "" }
        set { announcementEndpoints = [newValue] }
    }
    package var dataDirectory: String = "data"
    package var catalog: String?
    package var ingest: String?
    package var ingestFormat: String = "jsonl"
    /// `kafka`: events from a Kafka topic, this agent one shard of the region's consumer group.
    package var kafka: KafkaConfiguration?
    package var evaluationUsers: Int = 1000
    package var threads: Int = 1
    package var privacy: Privacy?
    package var secureAggregationPeers: [String]?
    /// The operator endpoint (``HTTPConfiguration``; files default into `data_directory`).
    package var http = HTTPConfiguration()
    /// `non_private: true`: the explicit opt-out of differential privacy.
    package var nonPrivate = false
    package var alerts = Alerts()
    package var trends = Trends()
    /// `clients`: who may use this agent's own sockets, by public key (``Clients``).
    package var clients = Clients()
    /// `insecure_loopback: true`: a socket without enrolled clients serves plain (no CURVE), which is
    /// allowed only on a loopback address, IPC or inproc. Off by default: such a socket is refused.
    package var insecureLoopback = false

    /// `clients`: the public keys (`edge-agent keygen`) allowed on each of the agent's sockets, which then
    /// run CURVE with the agent's identity as the server key: `producers` push events to `ingest`,
    /// `alert_consumers` subscribe to `alerts.publish`, `query_clients` ask `alerts.recommend`. Each entry
    /// is `{id, public_key_file}`; the id names the client in logs.
    package struct Clients: Sendable, Decodable, Equatable {
        package var producers: [Client] = []
        package var alertConsumers: [Client] = []
        package var queryClients: [Client] = []
        package init() {}

        package struct Client: Sendable, Decodable, Equatable {
            package var id: String
            package var publicKeyFile: String
            package init(id: String, publicKeyFile: String) { (self.id, self.publicKeyFile) = (id, publicKeyFile) }
            package init(from decoder: any Decoder) throws {
                try decoder.rejectUnknownKeys(CodingKeys.self)
                let c = try decoder.container(keyedBy: CodingKeys.self)
                id = try c.decode(String.self, forKey: .id)
                publicKeyFile = try c.decode(String.self, forKey: .publicKeyFile)
            }
            enum CodingKeys: String, CodingKey, CaseIterable { case id, publicKeyFile = "public_key_file" }
        }

        package init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            producers = try c.decodeIfPresent([Client].self, forKey: .producers) ?? []
            alertConsumers = try c.decodeIfPresent([Client].self, forKey: .alertConsumers) ?? []
            queryClients = try c.decodeIfPresent([Client].self, forKey: .queryClients) ?? []
        }
        enum CodingKeys: String, CodingKey, CaseIterable {
            case producers, alertConsumers = "alert_consumers", queryClients = "query_clients"
        }
    }

    /// One of the agent's own sockets ("doors"), as configured: where it binds, its ZAP domain, and the
    /// clients enrolled on it (none: plain, allowed only with `insecure_loopback` on a local address).
    package struct Door: Sendable, Equatable {
        package var key: String
        package var clientsKey: String
        package var endpoint: String
        package var domain: String
        package var clients: [Clients.Client]
        package var secure: Bool { !clients.isEmpty }
    }

    /// The agent's configured doors: `ingest`, `alerts.publish`, `alerts.recommend`.
    package var doors: [Door] {
        var doors: [Door] = []
        if let ingest {
            doors.append(Door(key: "ingest", clientsKey: "clients.producers", endpoint: ingest, domain: "ingest",
                              clients: clients.producers))
        }
        if let publish = alerts.publish {
            doors.append(Door(key: "alerts.publish", clientsKey: "clients.alert_consumers", endpoint: publish,
                              domain: "alerts", clients: clients.alertConsumers))
        }
        if let recommend = alerts.recommend {
            doors.append(Door(key: "alerts.recommend", clientsKey: "clients.query_clients", endpoint: recommend,
                              domain: "recommend", clients: clients.queryClients))
        }
        return doors
    }

    /// `trends`: whether this agent releases demand counts each round for the aggregator's demand-trend
    /// warnings (`release`, default false), and their noise per count when private (`noise_multiplier`,
    /// default 4; at least `privacy.min_noise_multiplier`). Charged to the ledger like every release;
    /// `aggregator privacy-plan --agent-config` includes it.
    package struct Trends: Sendable, Decodable, Equatable {
        package var release = false
        package var noiseMultiplier = 4.0
        package init() {}
        package init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            release = try c.decodeIfPresent(Bool.self, forKey: .release) ?? release
            noiseMultiplier = try c.decodeIfPresent(Double.self, forKey: .noiseMultiplier) ?? noiseMultiplier
        }
        enum CodingKeys: String, CodingKey, CaseIterable { case release, noiseMultiplier = "noise_multiplier" }
    }

    package struct Alerts: Sendable, Decodable, Equatable {
        package var publish: String?
        /// REP endpoint answering recommendation queries (`{"user": U, "n": 10}` → JSON list).
        package var recommend: String?
        package var file: String?
        package var coldStartThreshold = 2.0
        package var recommendations = 10
        package var detector = SwitchDetector.Settings()
        package var coldStartChurnThreshold = 5.0
        package var churn = ChurnDetector.Settings()
        /// A JSON file of `detector` keys (`edge-agent fit-drift --out`), read at load; not with `detector`.
        package var detectorFile: String?
        /// Where alerts are delivered to people: webhooks and e-mail (``AlertSinkConfiguration``).
        package var sinks: [AlertSinkConfiguration] = []
        package init() {}
        package init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            publish = try c.decodeIfPresent(String.self, forKey: .publish)
            recommend = try c.decodeIfPresent(String.self, forKey: .recommend)
            file = try c.decodeIfPresent(String.self, forKey: .file)
            coldStartThreshold = try c.decodeIfPresent(Double.self, forKey: .coldStartThreshold) ?? coldStartThreshold
            recommendations = try c.decodeIfPresent(Int.self, forKey: .recommendations) ?? recommendations
            detector = try c.decodeIfPresent(SwitchDetector.Settings.self, forKey: .detector) ?? detector
            coldStartChurnThreshold = try c.decodeIfPresent(Double.self, forKey: .coldStartChurnThreshold)
                ?? coldStartChurnThreshold
            churn = try c.decodeIfPresent(ChurnDetector.Settings.self, forKey: .churn) ?? churn
            detectorFile = try c.decodeIfPresent(String.self, forKey: .detectorFile)
            sinks = try c.decodeIfPresent([AlertSinkConfiguration].self, forKey: .sinks) ?? []
            if detectorFile != nil && c.contains(.detector) {
                throw DecodingError.dataCorruptedError(forKey: .detectorFile, in: c,
                                                       debugDescription: "give detector or detector_file, not both")
            }
        }
        enum CodingKeys: String, CodingKey, CaseIterable {
            case publish, file, recommendations, recommend, detector, churn, sinks, detectorFile = "detector_file"
            case coldStartThreshold = "cold_start_threshold", coldStartChurnThreshold = "cold_start_churn_threshold"
        }
    }

    package struct Privacy: Sendable, Decodable, Equatable {
        package var epsilon: Double
        package var delta: Double
        package var evaluationNoiseMultiplier: Double = 0
        package var floor = PrivacyFloor()
        /// `release`: `at_cutoff` (default) holds every round's releases until a fixed time before the
        /// deadline, so their timing says nothing about the data; `when_ready` sends them as soon as they
        /// are computed (faster rounds; the time then reveals roughly how many users were sampled).
        package var releaseWhenReady = false
        package init(epsilon: Double, delta: Double, evaluationNoiseMultiplier: Double = 0, floor: PrivacyFloor = .init()) {
            self.epsilon = epsilon
            self.delta = delta
            self.evaluationNoiseMultiplier = evaluationNoiseMultiplier
            self.floor = floor
        }
        package init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            epsilon = try c.decode(Double.self, forKey: .epsilon)
            delta = try c.decode(Double.self, forKey: .delta)
            evaluationNoiseMultiplier = try c.decodeIfPresent(Double.self, forKey: .evaluationNoiseMultiplier) ?? 0
            floor.minNoiseMultiplier = try c.decodeIfPresent(Double.self, forKey: .minNoiseMultiplier)
                ?? floor.minNoiseMultiplier
            floor.maxSamplingRate = try c.decodeIfPresent(Double.self, forKey: .maxSamplingRate) ?? floor.maxSamplingRate
            switch try c.decodeIfPresent(String.self, forKey: .release) ?? "at_cutoff" {
            case "at_cutoff": releaseWhenReady = false
            case "when_ready": releaseWhenReady = true
            case let other:
                throw DecodingError.dataCorruptedError(forKey: .release, in: c,
                                                       debugDescription: "'\(other)': must be at_cutoff or when_ready")
            }
        }
        enum CodingKeys: String, CodingKey, CaseIterable {
            case epsilon, delta
            case evaluationNoiseMultiplier = "evaluation_noise_multiplier"
            case minNoiseMultiplier = "min_noise_multiplier", maxSamplingRate = "max_sampling_rate", release
        }
        package var budget: PrivacyBudget { PrivacyBudget(epsilon: epsilon, delta: delta) }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case id, aggregator, announcements, catalog, ingest, kafka, threads, privacy, alerts
        case aggregatorPublicKeyFile = "aggregator_public_key_file"
        case keyDirectory = "key_directory"
        case maxMessageBytes = "max_message_bytes"
        case memoryLimitMiB = "memory_limit_mib"
        case dataDirectory = "data_directory"
        case ingestFormat = "ingest_format"
        case evaluationUsers = "evaluation_users"
        case nonPrivate = "non_private"
        case secureAggregationPeers = "secure_aggregation_peers", http, trends, clients
        case insecureLoopback = "insecure_loopback"
    }

    /// The local event store.
    package var storePath: String { (dataDirectory as NSString).appendingPathComponent("events.sqlite") }
    /// The thresholds in force, written by live scoring when the aggregator sends them.
    package var thresholdsPath: String { (dataDirectory as NSString).appendingPathComponent("thresholds.json") }
    /// The alert store, and the JSONL file alerts are appended to.
    package var alertStorePath: String { (dataDirectory as NSString).appendingPathComponent("alerts.sqlite") }
    package var alertFilePath: String { alerts.file ?? (dataDirectory as NSString).appendingPathComponent("alerts.jsonl") }
    /// The privacy ledger.
    package var ledgerPath: String { (dataDirectory as NSString).appendingPathComponent("privacy.sqlite") }
    /// The budget the ledger enforces (unlimited only when NON-PRIVATE).
    package var budget: PrivacyBudget { privacy?.budget ?? PrivacyBudget(epsilon: .infinity, delta: 1e-6) }
    /// The floor the round worker enforces; nil only when NON-PRIVATE.
    package var floor: PrivacyFloor? { nonPrivate ? nil : privacy?.floor }
    /// The newest global model received.
    package var modelPath: String { (dataDirectory as NSString).appendingPathComponent("model.fdlm") }

    /// A configuration built in code (benchmarks, tests); the defaults are those of the YAML keys.
    package init(id: String, aggregator: String, announcements: String, keyDirectory: String = "",
                 aggregatorPublicKeyFile: String = "") {
        self.id = id
        self.keyDirectory = keyDirectory
        self.aggregatorPublicKeyFile = aggregatorPublicKeyFile
        aggregatorEndpoints = [aggregator]
        announcementEndpoints = [announcements]
    }

    /// An endpoint key given as one string or a list of them.
    private static func endpoints(_ container: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) throws -> [String]? {
        if let one = try? container.decodeIfPresent(String.self, forKey: key) { return [one] }
        return try container.decodeIfPresent([String].self, forKey: key)
    }

    package init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        aggregatorEndpoints = try Self.endpoints(container, .aggregator) ?? aggregatorEndpoints
        aggregatorPublicKeyFile = try container.decode(String.self, forKey: .aggregatorPublicKeyFile)
        keyDirectory = try container.decode(String.self, forKey: .keyDirectory)
        maxMessageBytes = try container.decodeIfPresent(Int.self, forKey: .maxMessageBytes) ?? maxMessageBytes
        memoryLimitMiB = try container.decodeIfPresent(Int.self, forKey: .memoryLimitMiB)
        announcementEndpoints = try Self.endpoints(container, .announcements) ?? announcementEndpoints
        dataDirectory = try container.decodeIfPresent(String.self, forKey: .dataDirectory) ?? dataDirectory
        catalog = try container.decodeIfPresent(String.self, forKey: .catalog)
        ingest = try container.decodeIfPresent(String.self, forKey: .ingest)
        ingestFormat = try container.decodeIfPresent(String.self, forKey: .ingestFormat) ?? ingestFormat
        kafka = try container.decodeIfPresent(KafkaConfiguration.self, forKey: .kafka)
        evaluationUsers = try container.decodeIfPresent(Int.self, forKey: .evaluationUsers) ?? evaluationUsers
        threads = try container.decodeIfPresent(Int.self, forKey: .threads) ?? threads
        privacy = try container.decodeIfPresent(Privacy.self, forKey: .privacy)
        secureAggregationPeers = try container.decodeIfPresent([String].self, forKey: .secureAggregationPeers)
        http = try container.decodeIfPresent(HTTPConfiguration.self, forKey: .http) ?? http
        nonPrivate = try container.decodeIfPresent(Bool.self, forKey: .nonPrivate) ?? false
        alerts = try container.decodeIfPresent(Alerts.self, forKey: .alerts) ?? alerts
        trends = try container.decodeIfPresent(Trends.self, forKey: .trends) ?? trends
        clients = try container.decodeIfPresent(Clients.self, forKey: .clients) ?? clients
        insecureLoopback = try container.decodeIfPresent(Bool.self, forKey: .insecureLoopback) ?? false
    }

    /// Environment variables that override keys: `FEDDRIFT_AGENT_PRIVACY__EPSILON=4` sets `privacy.epsilon`.
    package static let environmentPrefix = "FEDDRIFT_AGENT_"

    package static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(ConfigError) -> EdgeAgentConfiguration
    {
        var configuration = try ConfigurationFile.load(EdgeAgentConfiguration.self, from: path,
                                                       environmentPrefix: Self.environmentPrefix,
                                                       environment: environment)
        configuration.keyDirectory = ConfigurationFile.resolve(configuration.keyDirectory, relativeTo: path)
        configuration.aggregatorPublicKeyFile = ConfigurationFile.resolve(configuration.aggregatorPublicKeyFile,
                                                                          relativeTo: path)
        configuration.dataDirectory = ConfigurationFile.resolve(configuration.dataDirectory, relativeTo: path)
        configuration.http.tokenFile = configuration.http.tokenFile.map { ConfigurationFile.resolve($0, relativeTo: path) }
        configuration.secureAggregationPeers = configuration.secureAggregationPeers?.map {
            ConfigurationFile.resolve($0, relativeTo: path)
        }
        configuration.catalog = configuration.catalog.map { ConfigurationFile.resolve($0, relativeTo: path) }
        if let file = configuration.kafka?.passwordFile {
            configuration.kafka?.passwordFile = ConfigurationFile.resolve(file, relativeTo: path)
        }
        for keyPath in [\Clients.producers, \Clients.alertConsumers, \Clients.queryClients] {
            for index in configuration.clients[keyPath: keyPath].indices {
                configuration.clients[keyPath: keyPath][index].publicKeyFile = ConfigurationFile.resolve(
                    configuration.clients[keyPath: keyPath][index].publicKeyFile, relativeTo: path)
            }
        }
        configuration.alerts.file = configuration.alerts.file.map { ConfigurationFile.resolve($0, relativeTo: path) }
        for index in configuration.alerts.sinks.indices { configuration.alerts.sinks[index].resolvePaths(relativeTo: path) }
        if let file = configuration.alerts.detectorFile.map({ ConfigurationFile.resolve($0, relativeTo: path) }) {
            configuration.alerts.detectorFile = file
            guard let data = FileManager.default.contents(atPath: file) else {
                throw .invalidValue(key: "alerts.detector_file", value: file, reason: "cannot read it")
            }
            do {
                configuration.alerts.detector = try JSONDecoder().decode(SwitchDetector.Settings.self, from: data)
            } catch {
                throw .invalidValue(key: "alerts.detector_file", value: file,
                                    reason: "not a JSON object of detector settings (edge-agent fit-drift --out): \(error)")
            }
        }
        try configuration.validate()
        return configuration
    }

    package func validate() throws(ConfigError) {
        guard !id.isEmpty, id.utf8.count <= 64 else {
            throw .invalidValue(key: "id", value: id, reason: "must be 1 to 64 bytes")
        }
        _ = try http.settings(directory: dataDirectory)
        if let memoryLimitMiB, !(64...(1 << 30)).contains(memoryLimitMiB) {
            throw .invalidValue(key: "memory_limit_mib", value: "\(memoryLimitMiB)", reason: "must be 64 to 1073741824 (MiB)")
        }
        for (key, endpoints) in [("aggregator", aggregatorEndpoints), ("announcements", announcementEndpoints)] {
            guard (1...4).contains(endpoints.count), Set(endpoints).count == endpoints.count else {
                throw .invalidValue(key: key, value: endpoints.joined(separator: ","),
                                    reason: "one endpoint, or 2 to 4 different ones (a highly available aggregator)")
            }
            for endpoint in endpoints { _ = try ConfigurationFile.validateEndpoint(endpoint, key: key, bind: false) }
        }
        guard aggregatorEndpoints.count == announcementEndpoints.count else {
            throw .invalidValue(key: "announcements", value: announcementEndpoints.joined(separator: ","),
                                reason: "give one per aggregator endpoint (\(aggregatorEndpoints.count))")
        }
        // No door without a key: each socket runs CURVE with its enrolled clients, or — explicitly, and
        // only where nobody else can reach it — plain.
        for door in doors {
            let endpoint = try ConfigurationFile.validateEndpoint(door.endpoint, key: door.key, bind: true)
            for (index, client) in door.clients.enumerated() {
                let key = "\(door.clientsKey)[\(index)]"
                guard !client.id.isEmpty, client.id.utf8.count <= 64 else {
                    throw .invalidValue(key: key + ".id", value: client.id, reason: "must be 1 to 64 bytes")
                }
                guard door.clients[..<index].allSatisfy({ $0.id != client.id && $0.publicKeyFile != client.publicKeyFile }) else {
                    throw .invalidValue(key: key, value: client.id, reason: "enrolled twice (the same id or key file)")
                }
            }
            guard !door.secure else { continue }
            guard insecureLoopback else {
                throw .invalidValue(key: door.clientsKey, value: "none", reason: """
                    \(door.key) (\(door.endpoint)) would let in anyone who can reach it: enrol its clients' public keys \
                    (edge-agent keygen) under \(door.clientsKey), or, on a loopback address only, set insecure_loopback: true
                    """)
            }
            guard endpoint.isLocal else {
                throw .invalidValue(key: door.key, value: door.endpoint, reason: """
                    insecure_loopback serves plain sockets on loopback addresses (127.0.0.1, [::1]), IPC or inproc only; \
                    enrol clients under \(door.clientsKey) to serve other hosts
                    """)
            }
        }
        guard alerts.coldStartThreshold.isFinite, alerts.coldStartChurnThreshold.isFinite, alerts.recommendations >= 0 else {
            throw .invalidValue(key: "alerts", value: "\(alerts.coldStartThreshold)",
                                reason: "cold_start_threshold must be finite and recommendations ≥ 0")
        }
        for (index, sink) in alerts.sinks.enumerated() {
            try sink.validate(index: index, kinds: DriftAlert.Kind.allCases.map(\.rawValue))
            guard alerts.sinks[..<index].allSatisfy({ $0.name != sink.name }) else {
                throw .invalidValue(key: "alerts.sinks[\(index)].name", value: sink.name, reason: "two sinks have this name")
            }
        }
        guard EventFormat(rawValue: ingestFormat) != nil else {
            throw .invalidValue(key: "ingest_format", value: ingestFormat, reason: "must be taobao or jsonl")
        }
        try kafka?.validate(ingestFormat: ingestFormat)
        guard evaluationUsers >= 0 else {
            throw .invalidValue(key: "evaluation_users", value: "\(evaluationUsers)", reason: "must be ≥ 0")
        }
        switch (privacy, nonPrivate) {
        case (nil, false):
            throw .invalidValue(key: "privacy", value: "(missing)", reason: """
                an agent releases nothing without a privacy budget. Add, for example, \
                privacy: {epsilon: 8, delta: 1.0e-6} (plan it with aggregator privacy-plan), or set \
                non_private: true to run without differential privacy, labelled NON-PRIVATE
                """)
        case (.some, true):
            throw .invalidValue(key: "non_private", value: "true",
                                reason: "give a privacy budget or non_private: true, not both")
        case (.some(let privacy), false):
            guard privacy.epsilon > 0, privacy.epsilon.isFinite, privacy.delta > 0, privacy.delta < 1 else {
                throw .invalidValue(key: "privacy", value: "ε \(privacy.epsilon), δ \(privacy.delta)",
                                    reason: "need a finite ε > 0 and 0 < δ < 1")
            }
            let floor = privacy.floor
            guard floor.minNoiseMultiplier > 0, floor.minNoiseMultiplier.isFinite,
                  floor.maxSamplingRate > 0, floor.maxSamplingRate <= 1 else {
                throw .invalidValue(key: "privacy.min_noise_multiplier",
                                    value: "\(floor.minNoiseMultiplier), max_sampling_rate \(floor.maxSamplingRate)",
                                    reason: "need min_noise_multiplier > 0 and 0 < max_sampling_rate ≤ 1")
            }
            let z = privacy.evaluationNoiseMultiplier
            guard z == 0 || (z >= floor.minNoiseMultiplier && z.isFinite) else {
                throw .invalidValue(key: "privacy.evaluation_noise_multiplier", value: "\(z)",
                                    reason: "must be 0 (no evaluation releases) or at least min_noise_multiplier "
                                        + "\(floor.minNoiseMultiplier)")
            }
        case (nil, true):
            break
        }
        if trends.release, let privacy, !nonPrivate {
            let z = trends.noiseMultiplier
            guard z.isFinite, z >= privacy.floor.minNoiseMultiplier else {
                throw .invalidValue(key: "trends.noise_multiplier", value: "\(z)",
                                    reason: "must be at least privacy.min_noise_multiplier \(privacy.floor.minNoiseMultiplier)")
            }
        }
        guard (1...256).contains(threads) else {
            throw .invalidValue(key: "threads", value: "\(threads)", reason: "must be between 1 and 256")
        }
    }
}
