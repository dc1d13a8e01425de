package import FedIO
package import FedLogic
package import FedModel
import Foundation

/// The aggregator's configuration (`configs/aggregator.yaml`).
///
/// Keys (YAML, snake_case):
/// - `id` (string, default `aggregator`): the name agents see in welcomes and logs.
/// - `listen` (endpoint, default `tcp://127.0.0.1:7700`): the agent-facing ROUTER; CURVE-encrypted,
///   only enrolled agent keys are admitted.
/// - `announce` (endpoint, default `tcp://127.0.0.1:7701`): the PUB socket for round announcements and
///   drift thresholds; CURVE-encrypted, enrolled keys only, every announcement signed.
/// - `key_directory` (path, required, **secret**): holds `identity.secret` (0600) and `identity.public`.
/// - `state_directory` (path, default `state`): `checkpoint.sqlite` (model, round, optimizer and per-agent
///   state, replaced atomically after every round) and `models/` (the last `keep_models` model files).
/// - `max_message_bytes` (integer, default 64 MiB): larger inbound messages drop the sender's connection.
/// - `memory_limit_mib` (integer ≥ 64, default half the machine's or the cgroup's memory): above this resident
///   memory the aggregator closes every agent connection (``MemoryGuard``); agents reconnect.
/// - `model`: `preset` (`small` | `medium`, default small) and `seed` (default 1) of the initial model.
/// - `rounds`: `min_agents` (quorum, default 1), `timeout_seconds` (deadline, default 60), `max_rounds`
///   (0 = until stopped), and the training hyper-parameters announced with every round:
///   `sampling_rate` (q, default 0.1), `clip_norm` (S, default 1), `noise_multiplier` (z, default 1, or
///   0 with `non_private: true`; 0 only with `non_private: true`),
///   `learning_rate` (local η, default 1), `local_steps` (default 1), `sequence_length` (default 50);
///   `expected_users` (users of all agents; required with noise: the fixed denominator is q × it);
///   `adaptive_clipping` (optional: `target_quantile` γ, default 0.5; `learning_rate` η_C, default 0.2;
///   `count_noise_multiplier` σ_b, default 10) makes `clip_norm` the starting value of an adaptive S.
/// - `server_optimizer`: `kind` (`sgd` | `adam`, default sgd), `learning_rate` (default 1), `momentum`
///   (SGD, default 0), `max_update_norm` (absolute L2 bound of one agent's update, default 1e6),
///   `aggregation` (`mean` | `trimmed_mean` | `median`, default mean: how the agents' updates are combined;
///   the robust rules bound what one Byzantine agent can do and need `secure_aggregation.enabled: false`),
///   `trim` (trimmed_mean: values dropped from each side of every coordinate, default 1, below half the agents).
/// - `keep_models` (integer, default 5).
/// - `non_private` (boolean, default false): `true` allows `rounds.noise_multiplier: 0` (exact updates);
///   the aggregator then says NON-PRIVATE in its log, its progress lines and `status.json`. Agents
///   refuse such rounds unless they are `non_private` too.
/// - `secure_aggregation`: `enabled` (`auto` | `true` | `false`, default auto: on with 3 or more
///   enrolled agents), `threshold` (t, the fewest agents whose sum can be unmasked; each adds 1/t of the
///   noise; default the larger of `rounds.min_agents` and a majority of the enrolled agents, at least 2),
///   `max_users` (users sampled in one round by all agents together at most, which sets the 32-bit grid;
///   default `rounds.expected_users`, or 1,000,000 without it). On, the aggregator sees only the sum of
///   the agents' masked updates, and the noise is added once for the sum instead of once per agent.
/// - `http`: the operator endpoint, `listen`, `token_file`, `insecure_loopback` (``HTTPConfiguration``).
/// - `upstream` (path, optional): makes this a **regional aggregator**: the edge-agent configuration (its `id`
///   at the global aggregator, `aggregator`, `announcements`, `aggregator_public_key_file`, `key_directory`,
///   `data_directory` for the region's ledger, `privacy` or `non_private`) with which it joins the global
///   aggregator as one agent. Its rounds then open only when a global round asks, with the global model and
///   plan, and their sum goes up as the region's update (docs/ARCHITECTURE.md, "Scale").
/// - `postgres` (optional): keep the checkpoint, the per-agent records and ledger heads, the enrolment and the
///   round log in PostgreSQL, shared by two aggregator processes of which one leads through a lease
///   (``PostgresConfiguration``). Without it, the state is `state_directory/checkpoint.sqlite`.
/// - `agents` (list, required): the allow-list, each with `id` and `public_key_file` (the agent's
///   `identity.public`), and optionally `epsilon_budget` (the region's agreed ε, drawn on the
///   dashboard). Only these agents can connect or have envelopes opened.
///
/// Relative paths are resolved against the configuration file's directory.
package struct AggregatorConfiguration: Sendable, Decodable {
    package struct EnrolledAgent: Sendable, Decodable {
        package var id: String
        package var publicKeyFile: String
        /// The ε the operator agreed with this agent's region (its `privacy.epsilon`): the dashboard draws
        /// its spending against it. Informational; the agent's own ledger enforces its budget.
        package var epsilonBudget: Double?
        package init(id: String, publicKeyFile: String) {
            self.id = id
            self.publicKeyFile = publicKeyFile
        }
        package init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = try c.decode(String.self, forKey: .id)
            publicKeyFile = try c.decode(String.self, forKey: .publicKeyFile)
            epsilonBudget = try c.decodeIfPresent(Double.self, forKey: .epsilonBudget)
            if let budget = epsilonBudget, !(budget > 0 && budget.isFinite) {
                throw DecodingError.dataCorruptedError(forKey: .epsilonBudget, in: c,
                                                       debugDescription: "\(budget): must be a finite ε > 0")
            }
        }
        enum CodingKeys: String, CodingKey, CaseIterable {
            case id
            case publicKeyFile = "public_key_file", epsilonBudget = "epsilon_budget"
        }
    }

    package struct Model: Sendable, Decodable {
        package var preset = "small"
        package var seed: UInt64 = 1
        package init() {}
        package init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let container = try decoder.container(keyedBy: CodingKeys.self)
            preset = try container.decodeIfPresent(String.self, forKey: .preset) ?? preset
            seed = try container.decodeIfPresent(UInt64.self, forKey: .seed) ?? seed
        }
        enum CodingKeys: String, CodingKey, CaseIterable { case preset, seed }
        package var shape: LSTMShape? { LSTMShape.preset(named: preset) }
    }

    package struct Rounds: Sendable, Decodable {
        package var minAgents = 1
        package var timeoutSeconds = 60.0
        package var maxRounds = 0
        /// Users of all agents together (operator-declared): with noise, the average divides the noised
        /// sum by q × expected_users, a constant, so no user's presence changes the denominator.
        package var expectedUsers = 0
        package var adaptiveClipping: AdaptiveClipping?
        /// Whether `noise_multiplier` was written (absent: 1, or 0 with `non_private: true`).
        var noiseMultiplierGiven = false
        package var hyperparameters = RoundHyperparameters(samplingRate: 0.1, clipNorm: 1, noiseMultiplier: 1,
                                                           learningRate: 1, localSteps: 1, sequenceLength: 50)
        package init() {}
        package init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            minAgents = try c.decodeIfPresent(Int.self, forKey: .minAgents) ?? minAgents
            timeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .timeoutSeconds) ?? timeoutSeconds
            maxRounds = try c.decodeIfPresent(Int.self, forKey: .maxRounds) ?? maxRounds
            expectedUsers = try c.decodeIfPresent(Int.self, forKey: .expectedUsers) ?? expectedUsers
            if let adaptive = try c.decodeIfPresent(AdaptiveClippingSettings.self, forKey: .adaptiveClipping) {
                adaptiveClipping = AdaptiveClipping(targetQuantile: adaptive.targetQuantile,
                                                    learningRate: adaptive.learningRate,
                                                    countNoiseMultiplier: adaptive.countNoiseMultiplier)
            }
            var h = hyperparameters
            h.samplingRate = try c.decodeIfPresent(Double.self, forKey: .samplingRate) ?? h.samplingRate
            h.clipNorm = try c.decodeIfPresent(Double.self, forKey: .clipNorm) ?? h.clipNorm
            if let z = try c.decodeIfPresent(Double.self, forKey: .noiseMultiplier) {
                h.noiseMultiplier = z
                noiseMultiplierGiven = true
            }
            h.learningRate = try c.decodeIfPresent(Double.self, forKey: .learningRate) ?? h.learningRate
            h.localSteps = try c.decodeIfPresent(UInt32.self, forKey: .localSteps) ?? h.localSteps
            h.sequenceLength = try c.decodeIfPresent(UInt32.self, forKey: .sequenceLength) ?? h.sequenceLength
            h.clipCountNoiseMultiplier = adaptiveClipping?.countNoiseMultiplier ?? 0
            hyperparameters = h
        }
        enum CodingKeys: String, CodingKey, CaseIterable {
            case minAgents = "min_agents", timeoutSeconds = "timeout_seconds", maxRounds = "max_rounds"
            case expectedUsers = "expected_users", adaptiveClipping = "adaptive_clipping"
            case samplingRate = "sampling_rate", clipNorm = "clip_norm", noiseMultiplier = "noise_multiplier"
            case learningRate = "learning_rate", localSteps = "local_steps", sequenceLength = "sequence_length"
        }
    }

    struct AdaptiveClippingSettings: Decodable {
        var targetQuantile = 0.5
        var learningRate = 0.2
        var countNoiseMultiplier = 10.0
        init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            targetQuantile = try c.decodeIfPresent(Double.self, forKey: .targetQuantile) ?? targetQuantile
            learningRate = try c.decodeIfPresent(Double.self, forKey: .learningRate) ?? learningRate
            countNoiseMultiplier = try c.decodeIfPresent(Double.self, forKey: .countNoiseMultiplier) ?? countNoiseMultiplier
        }
        enum CodingKeys: String, CodingKey, CaseIterable {
            case targetQuantile = "target_quantile", learningRate = "learning_rate"
            case countNoiseMultiplier = "count_noise_multiplier"
        }
    }

    package struct ServerOptimizer: Sendable, Decodable {
        package var kind = "sgd"
        package var learningRate = 1.0
        package var momentum = 0.0
        package var maxUpdateNorm = 1e6
        /// `aggregation`: `mean` (FedAvg), `trimmed_mean` or `median` (``AggregationRule``); `trim`.
        package var aggregation = "mean"
        package var trim = 1
        package init() {}
        package init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            kind = try c.decodeIfPresent(String.self, forKey: .kind) ?? kind
            learningRate = try c.decodeIfPresent(Double.self, forKey: .learningRate) ?? learningRate
            momentum = try c.decodeIfPresent(Double.self, forKey: .momentum) ?? momentum
            maxUpdateNorm = try c.decodeIfPresent(Double.self, forKey: .maxUpdateNorm) ?? maxUpdateNorm
            aggregation = try c.decodeIfPresent(String.self, forKey: .aggregation) ?? aggregation
            trim = try c.decodeIfPresent(Int.self, forKey: .trim) ?? trim
        }
        enum CodingKeys: String, CodingKey, CaseIterable {
            case kind, momentum, aggregation, trim
            case learningRate = "learning_rate", maxUpdateNorm = "max_update_norm"
        }

        /// The configured rule (validated by ``AggregatorConfiguration/validate()``).
        package var rule: AggregationRule { AggregationRule(rule: aggregation, trim: trim) ?? .mean }

        /// The configured optimizer (validated by ``AggregatorConfiguration/validate()``).
        package func make() -> any Optimizer {
            kind == "adam" ? Adam(learningRate: learningRate) : SGD(learningRate: learningRate, momentum: momentum)
        }
    }

    package var id: String = "aggregator"
    package var listen: String = "tcp://127.0.0.1:7700"
    package var announce: String = "tcp://127.0.0.1:7701"
    package var keyDirectory: String
    package var stateDirectory: String = "state"
    package var maxMessageBytes: Int = 64 << 20
    /// `memory_limit_mib`: above this resident memory, the ``MemoryGuard`` closes client connections; nil: half
    /// of the memory available (``ProcessMemory/defaultLimitMiB``).
    package var memoryLimitMiB: Int?
    package var effectiveMemoryLimitMiB: Int { memoryLimitMiB ?? ProcessMemory.defaultLimitMiB }
    package var model = Model()
    package var rounds = Rounds()
    package var serverOptimizer = ServerOptimizer()
    package var keepModels = 5
    package var drift = Drift()
    /// `trends`: the demand-trend detector's settings (``DemandTrendDetector/Settings``): `threshold`,
    /// `persistent_threshold`, `minimum_change`, `minimum_shoppers`, `minimum_period_shoppers`,
    /// `smoothing`, `warm_up` (rounds of history before a category may warn), `rebaseline_after`.
    package var trends = DemandTrendDetector.Settings()
    /// `trend_sinks`: where demand-trend warnings go (webhooks, e-mail; ``AlertSinkConfiguration``, kinds
    /// `demand_surge` and `demand_collapse`), from the outbox `state_directory/trends.sqlite`.
    package var trendSinks: [AlertSinkConfiguration] = []
    /// `catalog`: the category catalog the agents share (`aggregator catalog build`), so that trend warnings
    /// name platform categories, not only model indices. Optional; its size must be the model's.
    package var catalog: String?

    struct TrendSettings: Decodable {
        var settings = DemandTrendDetector.Settings()
        init(from decoder: any Decoder) throws {
            typealias Key = DemandTrendDetector.Settings.CodingKeys
            try decoder.rejectUnknownKeys(Key.self)
            let c = try decoder.container(keyedBy: Key.self)
            func read(_ key: Key, _ value: inout Double) throws { value = try c.decodeIfPresent(Double.self, forKey: key) ?? value }
            func read(_ key: Key, _ value: inout Int) throws { value = try c.decodeIfPresent(Int.self, forKey: key) ?? value }
            try read(.threshold, &settings.threshold)
            try read(.persistentThreshold, &settings.persistentThreshold)
            try read(.minimumChange, &settings.minimumChange)
            try read(.minimumShoppers, &settings.minimumShoppers)
            try read(.minimumPeriodShoppers, &settings.minimumPeriodShoppers)
            try read(.smoothing, &settings.smoothing)
            try read(.warmUp, &settings.warmUp)
            try read(.rebaselineAfter, &settings.rebaselineAfter)
            let s = settings
            guard s.threshold > 0, s.persistentThreshold > 0, s.minimumChange > 0, s.minimumShoppers >= 0,
                  s.minimumPeriodShoppers >= 0, s.smoothing > 0, s.smoothing < 1, s.warmUp >= 1, s.rebaselineAfter >= 1 else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription:
                    "need positive thresholds and minimum_change, 0 < smoothing < 1, warm_up ≥ 1 and rebaseline_after ≥ 1"))
            }
        }
    }
    package var agents: [EnrolledAgent]
    package var secureAggregation = SecureAggregationSettings()
    /// The operator endpoint (``HTTPConfiguration``).
    package var http = HTTPConfiguration()
    /// `non_private: true`: the explicit opt-out that allows noise multiplier 0.
    package var nonPrivate = false
    /// `postgres`: the shared state of a highly available pair (nil: SQLite in `state_directory`).
    package var postgres: PostgresConfiguration?
    /// `upstream`: the agent configuration of a regional aggregator towards the global one (nil: not regional).
    package var upstream: String?

    /// The federated alert threshold (`drift:`): `alert_budget_per_10k` (alerts per 10,000 scored events
    /// the operator wants, default 50), `initial_threshold` (the threshold before the first calibration,
    /// default 2; the agents' `alerts.cold_start_threshold` should match), `calibration_step` (how far one
    /// round may move it, in score units, default 1), `histogram_noise_multiplier` (noise of each agent's
    /// release of its what-if alert and event counts; 0 = no releases, the threshold stays). Churn
    /// risk likewise: `churn_budget_per_1k_shopper_days` (warnings per 1,000 shopper-days, default 5)
    /// `initial_churn_threshold` (nats, default 5; the agents' `alerts.cold_start_churn_threshold`) and
    /// `churn_calibration_step` (default 0.25).
    package struct Drift: Sendable, Decodable {
        package var alertBudgetPer10k = 50.0
        package var initialThreshold = 2.0
        package var churnBudgetPer1kShopperDays = 5.0
        package var initialChurnThreshold = 5.0
        package var churnCalibrationStep = 0.25
        package var calibrationStep = 1.0
        package var histogramNoiseMultiplier = 0.0
        package init() {}
        package init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            alertBudgetPer10k = try c.decodeIfPresent(Double.self, forKey: .alertBudgetPer10k) ?? alertBudgetPer10k
            initialThreshold = try c.decodeIfPresent(Double.self, forKey: .initialThreshold) ?? initialThreshold
            churnBudgetPer1kShopperDays = try c.decodeIfPresent(Double.self, forKey: .churnBudgetPer1kShopperDays)
                ?? churnBudgetPer1kShopperDays
            initialChurnThreshold = try c.decodeIfPresent(Double.self, forKey: .initialChurnThreshold)
                ?? initialChurnThreshold
            churnCalibrationStep = try c.decodeIfPresent(Double.self, forKey: .churnCalibrationStep) ?? churnCalibrationStep
            calibrationStep = try c.decodeIfPresent(Double.self, forKey: .calibrationStep) ?? calibrationStep
            histogramNoiseMultiplier = try c.decodeIfPresent(Double.self, forKey: .histogramNoiseMultiplier)
                ?? histogramNoiseMultiplier
        }
        enum CodingKeys: String, CodingKey, CaseIterable {
            case alertBudgetPer10k = "alert_budget_per_10k", initialThreshold = "initial_threshold"
            case calibrationStep = "calibration_step", histogramNoiseMultiplier = "histogram_noise_multiplier"
            case churnBudgetPer1kShopperDays = "churn_budget_per_1k_shopper_days"
            case initialChurnThreshold = "initial_churn_threshold", churnCalibrationStep = "churn_calibration_step"
        }

        /// The thresholds before the first calibration.
        package var initialThresholds: AlertThresholds {
            AlertThresholds(interestShift: initialThreshold, churnRisk: initialChurnThreshold)
        }

        /// The churn calibration's settings.
        package var churnCalibration: ChurnRateCalibration.Settings {
            var settings = ChurnRateCalibration.Settings(budgetPer1kDays: churnBudgetPer1kShopperDays)
            settings.step = churnCalibrationStep
            return settings
        }

        /// The calibration's settings.
        package var calibration: AlertRateCalibration.Settings {
            var settings = AlertRateCalibration.Settings(budgetPer10k: alertBudgetPer10k)
            settings.step = calibrationStep
            return settings
        }
    }

    /// `secure_aggregation:` as written (``secureRound()`` resolves it against the enrolled agents).
    package struct SecureAggregationSettings: Sendable, Decodable {
        /// nil: auto.
        package var enabled: Bool?
        package var threshold: Int?
        package var maxUsers: Int?
        package init() {}
        package init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            if let flag = try? c.decodeIfPresent(Bool.self, forKey: .enabled) {
                enabled = flag
            } else if let word = try c.decodeIfPresent(String.self, forKey: .enabled) {
                guard word == "auto" else {
                    throw DecodingError.dataCorruptedError(forKey: .enabled, in: c,
                                                           debugDescription: "must be auto, true or false, not '\(word)'")
                }
            }
            threshold = try c.decodeIfPresent(Int.self, forKey: .threshold)
            maxUsers = try c.decodeIfPresent(Int.self, forKey: .maxUsers)
        }
        enum CodingKeys: String, CodingKey, CaseIterable { case enabled, threshold, maxUsers = "max_users" }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case secureAggregation = "secure_aggregation", http
        case id, listen, announce, agents, model, rounds, drift, trends, trendSinks = "trend_sinks", catalog
        case keyDirectory = "key_directory"
        case stateDirectory = "state_directory"
        case maxMessageBytes = "max_message_bytes"
        case memoryLimitMiB = "memory_limit_mib"
        case serverOptimizer = "server_optimizer"
        case keepModels = "keep_models"
        case nonPrivate = "non_private", postgres, upstream
    }

    /// A configuration built in code (benchmarks, tests); the defaults are those of the YAML keys.
    package init(keyDirectory: String, stateDirectory: String, agents: [EnrolledAgent]) {
        self.keyDirectory = keyDirectory
        self.stateDirectory = stateDirectory
        self.agents = agents
    }

    package init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decodeIfPresent(String.self, forKey: .id) ?? id
        listen = try container.decodeIfPresent(String.self, forKey: .listen) ?? listen
        announce = try container.decodeIfPresent(String.self, forKey: .announce) ?? announce
        keyDirectory = try container.decode(String.self, forKey: .keyDirectory)
        stateDirectory = try container.decodeIfPresent(String.self, forKey: .stateDirectory) ?? stateDirectory
        maxMessageBytes = try container.decodeIfPresent(Int.self, forKey: .maxMessageBytes) ?? maxMessageBytes
        memoryLimitMiB = try container.decodeIfPresent(Int.self, forKey: .memoryLimitMiB)
        model = try container.decodeIfPresent(Model.self, forKey: .model) ?? model
        rounds = try container.decodeIfPresent(Rounds.self, forKey: .rounds) ?? rounds
        serverOptimizer = try container.decodeIfPresent(ServerOptimizer.self, forKey: .serverOptimizer) ?? serverOptimizer
        keepModels = try container.decodeIfPresent(Int.self, forKey: .keepModels) ?? keepModels
        drift = try container.decodeIfPresent(Drift.self, forKey: .drift) ?? drift
        trends = try container.decodeIfPresent(TrendSettings.self, forKey: .trends)?.settings ?? trends
        trendSinks = try container.decodeIfPresent([AlertSinkConfiguration].self, forKey: .trendSinks) ?? []
        catalog = try container.decodeIfPresent(String.self, forKey: .catalog)
        rounds.hyperparameters.histogramNoiseMultiplier = drift.histogramNoiseMultiplier
        agents = try container.decode([EnrolledAgent].self, forKey: .agents)
        nonPrivate = try container.decodeIfPresent(Bool.self, forKey: .nonPrivate) ?? false
        secureAggregation = try container.decodeIfPresent(SecureAggregationSettings.self, forKey: .secureAggregation)
            ?? secureAggregation
        http = try container.decodeIfPresent(HTTPConfiguration.self, forKey: .http) ?? http
        postgres = try container.decodeIfPresent(PostgresConfiguration.self, forKey: .postgres)
        upstream = try container.decodeIfPresent(String.self, forKey: .upstream)
        if nonPrivate && !rounds.noiseMultiplierGiven { rounds.hyperparameters.noiseMultiplier = 0 }
    }

    /// Loads and validates `path`, resolving relative paths against it.
    /// Environment variables that override keys: `FEDDRIFT_AGGREGATOR_ROUNDS__MIN_AGENTS=3` sets `rounds.min_agents`.
    package static let environmentPrefix = "FEDDRIFT_AGGREGATOR_"

    package static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(ConfigError) -> AggregatorConfiguration
    {
        var configuration = try ConfigurationFile.load(AggregatorConfiguration.self, from: path,
                                                       environmentPrefix: Self.environmentPrefix,
                                                       environment: environment)
        configuration.keyDirectory = ConfigurationFile.resolve(configuration.keyDirectory, relativeTo: path)
        configuration.stateDirectory = ConfigurationFile.resolve(configuration.stateDirectory, relativeTo: path)
        configuration.http.tokenFile = configuration.http.tokenFile.map { ConfigurationFile.resolve($0, relativeTo: path) }
        for index in configuration.trendSinks.indices { configuration.trendSinks[index].resolvePaths(relativeTo: path) }
        configuration.catalog = configuration.catalog.map { ConfigurationFile.resolve($0, relativeTo: path) }
        configuration.postgres?.resolvePaths(relativeTo: path)
        configuration.upstream = configuration.upstream.map { ConfigurationFile.resolve($0, relativeTo: path) }
        for index in configuration.agents.indices {
            configuration.agents[index].publicKeyFile = ConfigurationFile.resolve(
                configuration.agents[index].publicKeyFile, relativeTo: path)
        }
        try configuration.validate()
        return configuration
    }

    package func validate() throws(ConfigError) {
        try postgres?.validate()
        if let upstream {
            guard postgres == nil else {
                throw .invalidValue(key: "upstream", value: upstream, reason: "a regional aggregator keeps its state in "
                                        + "checkpoint.sqlite: postgres is not supported with upstream yet")
            }
            guard !serverOptimizer.rule.isRobust else {
                throw .invalidValue(key: "server_optimizer.aggregation", value: serverOptimizer.aggregation, reason:
                    "a regional aggregator forwards the sum of its agents' updates; the robust rules apply at the global aggregator")
            }
        }
        for (index, sink) in trendSinks.enumerated() {
            try sink.validate(index: index, kinds: TrendStore.kinds, key: "trend_sinks")
            guard trendSinks[..<index].allSatisfy({ $0.name != sink.name }) else {
                throw .invalidValue(key: "trend_sinks[\(index)].name", value: sink.name, reason: "two sinks have this name")
            }
        }
        try ConfigurationFile.validateEndpoint(listen, key: "listen", bind: true)
        try ConfigurationFile.validateEndpoint(announce, key: "announce", bind: true)
        guard announce != listen else {
            throw .invalidValue(key: "announce", value: announce, reason: "must differ from 'listen'")
        }
        guard model.shape != nil else {
            throw .invalidValue(key: "model.preset", value: model.preset, reason: "must be small or medium")
        }
        guard agents.isEmpty || (1...agents.count).contains(rounds.minAgents) else {
            throw .invalidValue(key: "rounds.min_agents", value: "\(rounds.minAgents)",
                                reason: "must be between 1 and the \(agents.count) enrolled agents")
        }
        guard rounds.timeoutSeconds > 0, rounds.timeoutSeconds <= 2_592_000 else {
            throw .invalidValue(key: "rounds.timeout_seconds", value: "\(rounds.timeoutSeconds)",
                                reason: "must be > 0 and at most 2592000 (30 days)")
        }
        guard rounds.maxRounds >= 0 else {
            throw .invalidValue(key: "rounds.max_rounds", value: "\(rounds.maxRounds)", reason: "must be ≥ 0 (0 = no limit)")
        }
        let h = rounds.hyperparameters
        let checks: [(String, Double, Bool)] = [
            ("rounds.sampling_rate", h.samplingRate, h.samplingRate > 0 && h.samplingRate <= 1),
            ("rounds.clip_norm", h.clipNorm, h.clipNorm > 0 && h.clipNorm.isFinite),
            ("rounds.noise_multiplier", h.noiseMultiplier, h.noiseMultiplier >= 0 && h.noiseMultiplier.isFinite),
            ("rounds.learning_rate", h.learningRate, h.learningRate > 0 && h.learningRate.isFinite),
            ("rounds.local_steps", Double(h.localSteps), (1...100).contains(h.localSteps)),
            ("rounds.sequence_length", Double(h.sequenceLength), (2...10_000).contains(h.sequenceLength)),
            ("server_optimizer.learning_rate", serverOptimizer.learningRate,
             serverOptimizer.learningRate > 0 && serverOptimizer.learningRate.isFinite),
            ("server_optimizer.momentum", serverOptimizer.momentum, (0..<1).contains(serverOptimizer.momentum)),
            ("server_optimizer.max_update_norm", serverOptimizer.maxUpdateNorm, serverOptimizer.maxUpdateNorm > 0),
            ("keep_models", Double(keepModels), keepModels >= 1),
        ]
        if let adaptive = rounds.adaptiveClipping {
            guard (0...1).contains(adaptive.targetQuantile), adaptive.learningRate > 0, adaptive.countNoiseMultiplier > 0 else {
                throw .invalidValue(key: "rounds.adaptive_clipping", value: "\(adaptive)",
                                    reason: "need 0 ≤ target_quantile ≤ 1, learning_rate > 0, count_noise_multiplier > 0")
            }
        }
        guard h.noiseMultiplier > 0 || nonPrivate else {
            throw .invalidValue(key: "rounds.noise_multiplier", value: "\(h.noiseMultiplier)", reason: """
                updates would carry no noise. Give a noise multiplier (e.g. 1.0; plan it with aggregator \
                privacy-plan) or set non_private: true to run without differential privacy, labelled NON-PRIVATE
                """)
        }
        guard h.noiseMultiplier == 0 || rounds.expectedUsers > 0 else {
            throw .invalidValue(key: "rounds.expected_users", value: "\(rounds.expectedUsers)",
                                reason: "with noise_multiplier > 0, declare the users of all agents together "
                                    + "(the fixed FedAvg denominator is sampling_rate × expected_users)")
        }
        for (key, value, valid) in checks where !valid {
            throw .invalidValue(key: key, value: "\(value)", reason: "out of range (see configs/aggregator.yaml)")
        }
        guard drift.alertBudgetPer10k > 0, drift.alertBudgetPer10k < 10_000, drift.histogramNoiseMultiplier >= 0,
              drift.histogramNoiseMultiplier.isFinite, drift.initialThreshold.isFinite, drift.calibrationStep > 0,
              drift.calibrationStep <= 10 else {
            throw .invalidValue(key: "drift", value: "\(drift.alertBudgetPer10k)",
                                reason: "need 0 < alert_budget_per_10k < 10000, histogram_noise_multiplier ≥ 0, "
                                    + "a finite initial_threshold, 0 < calibration_step ≤ 10")
        }
        guard drift.churnBudgetPer1kShopperDays > 0, drift.churnBudgetPer1kShopperDays < 1_000,
              drift.initialChurnThreshold.isFinite, drift.churnCalibrationStep > 0, drift.churnCalibrationStep <= 10 else {
            throw .invalidValue(key: "drift.churn_budget_per_1k_shopper_days",
                                value: "\(drift.churnBudgetPer1kShopperDays)",
                                reason: "need 0 < churn_budget_per_1k_shopper_days < 1000, a finite initial_churn_threshold "
                                    + "and 0 < churn_calibration_step ≤ 10")
        }
        guard ["sgd", "adam"].contains(serverOptimizer.kind) else {
            throw .invalidValue(key: "server_optimizer.kind", value: serverOptimizer.kind, reason: "must be sgd or adam")
        }
        guard let rule = AggregationRule(rule: serverOptimizer.aggregation, trim: serverOptimizer.trim) else {
            throw .invalidValue(key: "server_optimizer.aggregation", value: serverOptimizer.aggregation,
                                reason: "must be mean, trimmed_mean (with trim ≥ 1) or median")
        }
        if case .trimmedMean(let trim) = rule, 2 * trim >= agents.count {
            throw .invalidValue(key: "server_optimizer.trim", value: "\(trim)", reason: """
                trimming \(trim) from each side leaves nothing of \(agents.count) agents' updates: keep it below half
                """)
        }
        if rule.isRobust, secureAggregationEnabled {
            throw .invalidValue(key: "server_optimizer.aggregation", value: serverOptimizer.aggregation, reason: """
                needs each agent's update, and secure aggregation reveals only their sum: set \
                secure_aggregation.enabled: false to use it (each agent's update is then private on its own), or keep mean
                """)
        }
        guard maxMessageBytes >= 64 << 10 else {
            throw .invalidValue(key: "max_message_bytes", value: "\(maxMessageBytes)", reason: "must be at least 65536")
        }
        if let memoryLimitMiB, !(64...(1 << 30)).contains(memoryLimitMiB) {
            throw .invalidValue(key: "memory_limit_mib", value: "\(memoryLimitMiB)", reason: "must be 64 to 1073741824 (MiB)")
        }
        guard !agents.isEmpty else {
            throw .invalidValue(key: "agents", value: "[]", reason: "enroll at least one agent (id + public_key_file)")
        }
        if secureAggregation.enabled == true, agents.count < Self.secureMinimumAgents {
            throw .invalidValue(key: "secure_aggregation.enabled", value: "true", reason: """
                needs at least \(Self.secureMinimumAgents) enrolled agents (with two, each would learn the other's \
                update from the sum); \(agents.count) enrolled
                """)
        }
        if let t = secureAggregation.threshold, !(2...max(2, agents.count)).contains(t) || 2 * t <= agents.count {
            throw .invalidValue(key: "secure_aggregation.threshold", value: "\(t)", reason: """
                must be more than half of the \(agents.count) enrolled agents (agents refuse a smaller one: two groups \
                of t could then be shown different survivor lists) and at most all of them
                """)
        }
        if let users = secureAggregation.maxUsers, users < 1 {
            throw .invalidValue(key: "secure_aggregation.max_users", value: "\(users)", reason: "must be ≥ 1")
        }
        do {
            _ = try secureRound()
        } catch {
            throw .invalidValue(key: "secure_aggregation.max_users", value: "\(secureMaxUsers)", reason: """
                \(error): lower it (it bounds the users all agents sample in one round) or turn secure aggregation off
                """)
        }
        _ = try http.settings(directory: stateDirectory)
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

extension AggregatorConfiguration {
    /// FedAvg's denominator: fixed (q × expected users) with noise, the contributing users without.
    package var denominator: FederatedAveraging.Denominator {
        let h = rounds.hyperparameters
        return h.noiseMultiplier > 0 ? .fixed(h.samplingRate * Double(rounds.expectedUsers)) : .contributingUsers
    }
}

extension AggregatorConfiguration {
    /// Secure aggregation needs this many enrolled agents (two would each learn the other's update).
    package static let secureMinimumAgents = 3

    /// The users sampled in one round, at most, that the secure grid must hold.
    package var secureMaxUsers: Int {
        secureAggregation.maxUsers ?? (rounds.expectedUsers > 0 ? rounds.expectedUsers : 1_000_000)
    }

    /// Whether rounds run with secure aggregation: `enabled: true`, or auto with enough enrolled agents.
    package var secureAggregationEnabled: Bool {
        secureAggregation.enabled ?? (agents.count >= Self.secureMinimumAgents)
    }

    /// The threshold t and the grid's bits announced with every round; (0, 0) when secure aggregation is off.
    package func secureRound() throws(DistributedRelease.Failure) -> (threshold: Int, bits: Int) {
        guard secureAggregationEnabled else { return (0, 0) }
        let threshold = secureAggregation.threshold ?? max(2, rounds.minAgents, agents.count / 2 + 1)
        let bits = try DistributedRelease.bits(maxUsers: secureMaxUsers, noiseMultiplier: rounds.hyperparameters.noiseMultiplier)
        return (threshold, bits)
    }

    /// The round hyper-parameters as announced, secure aggregation included.
    package var announcedHyperparameters: RoundHyperparameters {
        var h = rounds.hyperparameters
        if let secure = try? secureRound() { (h.secureThreshold, h.secureBits) = secure }
        return h
    }

    /// True when some round would be released without noise (`non_private: true` and z = 0).
    package var isNonPrivate: Bool { nonPrivate && rounds.hyperparameters.noiseMultiplier == 0 }

    /// What the aggregator announces, for its status and start-up log.
    package var privacySummary: [String: String] {
        let h = rounds.hyperparameters
        var summary = ["mode": isNonPrivate ? "NON-PRIVATE" : "private", "sampling_rate": "\(h.samplingRate)",
                       "noise_multiplier": "\(h.noiseMultiplier)",
                       "alert_rate_noise_multiplier": "\(drift.histogramNoiseMultiplier)"]
        if let adaptive = rounds.adaptiveClipping { summary["clip_count_noise_multiplier"] = "\(adaptive.countNoiseMultiplier)" }
        let secure = (try? secureRound()) ?? (threshold: 0, bits: 0)
        summary["secure_aggregation"] = secure.threshold > 0
            ? "on (threshold \(secure.threshold) of \(agents.count) agents, \(secure.bits) bits per clip norm)" : "off"
        return summary
    }
}

extension AggregatorConfiguration {
    /// The catalog named by `catalog`, checked against the model's classes; nil without one.
    package func loadCatalog() throws(ConfigError) -> CategoryCatalog? {
        guard let catalog else { return nil }
        let loaded: CategoryCatalog
        do {
            loaded = try CategoryCatalog.read(from: catalog)
        } catch {
            throw ConfigError.invalidValue(key: "catalog", value: catalog, reason: "\(error)")
        }
        if let shape = model.shape, loaded.categories != shape.categories {
            throw ConfigError.invalidValue(key: "catalog", value: catalog, reason: """
                it has \(loaded.categories) categories, the model (\(model.preset)) \(shape.categories): \
                use the catalog the agents use, built for this model
                """)
        }
        return loaded
    }
}

extension AggregatorConfiguration {
    /// Refuses two enrolled agents with the same key (either half): one key cannot be two agents, and
    /// the allow-list could not tell them apart.
    package static func checkDistinctKeys(_ agents: [(id: String, file: String, key: NodePublicIdentity)]) throws(ConfigError) {
        var seenBox: [BoxPublicKey: String] = [:], seenSigning: [SigningPublicKey: String] = [:]
        for agent in agents {
            if let other = seenBox[agent.key.box] ?? seenSigning[agent.key.signing] {
                throw .invalidValue(key: "agents", value: agent.file,
                                    reason: "agents '\(other)' and '\(agent.id)' have the same public key: each agent needs its own (edge-agent keygen)")
            }
            seenBox[agent.key.box] = agent.id
            seenSigning[agent.key.signing] = agent.id
        }
    }
}
