import FedIO
import FedLogic
import FedModel
import FedNode
import Foundation
package import Logging
import Synchronization

/// `aggregator bench round`: the federation's own overhead per round, without local training — round
/// announcement, model download (sealed chunks), sealing and sending updates, opening and verifying
/// them, averaging, the checkpoint (SQLite, fsync) and the model export — with `agents` in-process
/// agents over loopback CURVE. In the same run: opening sealed updates next to libsodium's raw AEAD
/// rate (same chunking and cores), and summing float32 updates next to memcpy bandwidth.
package struct RoundBenchmark: Sendable {
    package struct Result: Sendable, Codable {
        package var agents: Int
        package var model: String
        package var parameters: Int
        package var rounds: Int
        package var roundP50Milliseconds: Double
        package var roundP99Milliseconds: Double
        /// Of which: closing (average, checkpoint with fsync, model export), median.
        package var closeP50Milliseconds: Double
        package var openGbps: Double
        package var aeadGbps: Double
        package var aggregateGbps: Double
        package var memcpyGbps: Double
        /// With `--secure`: the same rounds with secure aggregation, in the same run (the plain figures
        /// above are then also written as `plain_round_p50_ms`).
        package var secureRoundP50Milliseconds: Double?
        package var secureRoundP99Milliseconds: Double?
        package var plainRoundP50Milliseconds: Double?

        enum CodingKeys: String, CodingKey {
            case secureRoundP50Milliseconds = "secure_round_p50_ms", secureRoundP99Milliseconds = "secure_round_p99_ms"
            case plainRoundP50Milliseconds = "plain_round_p50_ms"
            case agents, model, parameters, rounds
            case roundP50Milliseconds = "round_p50_ms", roundP99Milliseconds = "round_p99_ms"
            case closeP50Milliseconds = "close_p50_ms"
            case openGbps = "open_gbps", aeadGbps = "aead_gbps", aggregateGbps = "aggregate_gbps"
            case memcpyGbps = "memcpy_gbps"
        }
    }

    package var agents: Int
    package var preset: String
    package var rounds: Int
    /// Also time the rounds with secure aggregation (needs 3 or more agents).
    package var secure: Bool

    package init(agents: Int, preset: String, rounds: Int = 20, secure: Bool = false) {
        self.secure = secure
        self.agents = agents
        self.preset = preset
        self.rounds = rounds
    }

    /// An agent whose "training" is a ready-made update: the benchmark measures everything but training.
    struct PrecomputedWorker: RoundWorker {
        let values: [Float]
        func work(global: LSTMParameters<Float>, modelVersion: UInt64, round: RoundPlan,
                  mayRelease: @Sendable () -> Bool) throws -> RoundWork {
            var work = RoundWork(submission: LocalUpdate(round: round.round, modelVersion: modelVersion, users: 1,
                                                         values: values),
                                 evaluation: nil, sampledUsers: 1, clippedUsers: 0, meanLoss: 0, seconds: 0)
            if let secure = round.hyperparameters.distributedRelease {
                // What a secure round's worker releases: the update on the secure grid (encoding included).
                var random = SodiumStream()
                work.secureInput = SecretWords(secure.encode(values, random: &random))
                work.submission.values = []
            }
            return work
        }
    }

    package func run(logger: Logger, progress: @Sendable (String) -> Void = { _ in }) async throws -> Result {
        guard let shape = LSTMShape.preset(named: preset) else {
            throw ConfigError.invalidValue(key: "--model", value: preset, reason: "must be small or medium")
        }
        let count = shape.layout.count
        var random = SplitMix64(seed: 7)
        // Each update has norm 0.5 ≤ S·users, so the verifier accepts it.
        let update = (0..<count).map { _ in Float(random.nextUnit() - 0.5) }
        let norm = update.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
        let values = update.map { $0 * Float(0.5 / norm) }

        progress("round overhead: \(agents) agents, \(preset) model (\(count) parameters), \(rounds) rounds + 1 warm-up")
        let reports = try await roundReports(shape: shape, values: values, logger: logger, secure: false)
        let rounds = reports.map(\.seconds)
        let sorted = rounds.sorted()
        let closes = reports.map(\.closeSeconds).sorted()
        func percentile(_ p: Double, _ sorted: [Double]) -> Double {
            sorted[min(sorted.count - 1, Int((p * Double(sorted.count)).rounded(.up)) - 1)]
        }
        var secureSorted: [Double]?
        if secure {
            progress("the same with secure aggregation: \(rounds.count) rounds + 1 warm-up")
            secureSorted = try await roundReports(shape: shape, values: values, logger: logger, secure: true)
                .map(\.seconds).sorted()
        }

        // Rates alternate in five trials and the medians are reported: on a small shared machine the
        // neighbours' load shifts from second to second, and alternating exposes both to the same.
        progress("opening sealed updates vs raw AEAD (5 alternating trials)")
        let updateBytes = UpdateSubmission(round: 1, modelVersion: 0, users: 1, values: values).encoded()
        var opens: [Double] = [], aeads: [Double] = []
        for _ in 0..<5 {
            opens.append(try openRate(payload: updateBytes, repetitions: 32))
            aeads.append(AEADProbe.decryptRate(bytes: updateBytes.count, repetitions: 32))
        }

        progress("summing updates vs memcpy (5 alternating trials)")
        let vectors = (0..<agents).map { index in values.map { $0 * Float(index + 1) } }
        var sums: [Double] = [], copies: [Double] = []
        for _ in 0..<5 {
            sums.append(Self.rate(bytes: agents * count * 4, repetitions: 10) {
                _ = FastMath.sum(vectors, count: count)
            })
            copies.append(Self.memcpyRate(bytes: agents * count * 4, repetitions: 10))
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        let open = median(opens), aead = median(aeads), aggregate = median(sums), memcpy = median(copies)
        return Result(agents: agents, model: preset, parameters: count, rounds: rounds.count,
                      roundP50Milliseconds: percentile(0.5, sorted) * 1000,
                      roundP99Milliseconds: percentile(0.99, sorted) * 1000,
                      closeP50Milliseconds: closes[closes.count / 2] * 1000,
                      openGbps: open, aeadGbps: aead, aggregateGbps: aggregate, memcpyGbps: memcpy,
                      secureRoundP50Milliseconds: secureSorted.map { percentile(0.5, $0) * 1000 },
                      secureRoundP99Milliseconds: secureSorted.map { percentile(0.99, $0) * 1000 },
                      plainRoundP50Milliseconds: secure ? percentile(0.5, sorted) * 1000 : nil)
    }

    /// Rounds with real sockets and crypto; returns each measured round's report (open → checkpoint).
    private func roundReports(shape: LSTMShape, values: [Float], logger: Logger, secure: Bool) async throws -> [RoundReport] {
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-bench-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: state) }
        let aggregatorIdentity = NodeIdentity()
        let ids = (1...agents).map { "agent-\($0)" }
        let identities = Dictionary(uniqueKeysWithValues: ids.map { ($0, NodeIdentity()) })
        var configuration = AggregatorConfiguration(
            keyDirectory: "", stateDirectory: state.path,
            agents: ids.map { .init(id: $0, publicKeyFile: "") })
        configuration.listen = "tcp://127.0.0.1:*"
        configuration.announce = "tcp://127.0.0.1:*"
        configuration.model.preset = preset
        configuration.rounds.minAgents = agents
        configuration.rounds.maxRounds = self.rounds + 1
        configuration.rounds.timeoutSeconds = 60
        configuration.rounds.hyperparameters.samplingRate = 1
        // The agents send precomputed updates: this measures the round's transport and averaging, not DP.
        configuration.nonPrivate = true
        configuration.rounds.hyperparameters.noiseMultiplier = 0
        configuration.secureAggregation.enabled = secure
        let context = try ZMQContext()
        let times = ReportLog()
        let server = try AggregatorServer(configuration: configuration, identity: aggregatorIdentity,
                                          agents: identities.mapValues(\.publicIdentity), context: context,
                                          logger: logger) { times.append($0) }
        defer { server.close() }
        let sessions = try identities.sorted { $0.key < $1.key }.map { id, identity in
            try AgentSession(
                configuration: EdgeAgentConfiguration(id: id, aggregator: server.router.boundEndpoints[0],
                                                      announcements: server.publisher.boundEndpoints[0]),
                identity: identity, aggregator: aggregatorIdentity.publicIdentity, context: context,
                worker: PrecomputedWorker(values: values), logger: logger, persistModel: false)
        }
        defer { sessions.forEach { $0.close() } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for session in sessions { group.addTask { try await session.run() } }
            try await server.run()
            group.cancelAll()
        }
        return Array(times.values.dropFirst())  // the first round includes connecting and warm-up
    }

    private func openRate(payload: [UInt8], repetitions: Int) throws -> Double {
        let aggregator = NodeIdentity(), agent = NodeIdentity()
        let sealer = EnvelopeSealer(identity: agent, senderID: "bench", recipient: aggregator.box.publicKey)
        let opener = EnvelopeOpener(recipient: aggregator.box, senders: ["bench": agent.signing.publicKey])
        let sealed = try (0..<repetitions).map { _ in try sealer.seal(payload, kind: MessageKind.update.rawValue, round: 1) }
        let started = ContinuousClock.now
        for block in sealed {
            let opened = try block.withUnsafeBytes {
                try opener.openFloats($0, expecting: .init(senderID: "bench", round: 1))
            }
            _ = try UpdateSubmission(opened: opened)
        }
        return Double(payload.count * repetitions) / (ContinuousClock.now - started).inSeconds / 1e9
    }

    static func rate(bytes: Int, repetitions: Int, _ body: () -> Void) -> Double {
        body()  // warm-up: page faults, caches
        let started = ContinuousClock.now
        for _ in 0..<repetitions { body() }
        return Double(bytes * repetitions) / (ContinuousClock.now - started).inSeconds / 1e9
    }

    /// memcpy of `bytes` between two buffers: bytes copied per second.
    static func memcpyRate(bytes: Int, repetitions: Int) -> Double {
        // unsafe: the memcpy ceiling the sum is compared with needs two raw 64-byte-aligned buffers
        let source = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        // unsafe: the second of the two buffers
        let target = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer {
            source.deallocate()
            target.deallocate()
        }
        source.initializeMemory(as: UInt8.self, repeating: 1, count: bytes)
        return rate(bytes: bytes, repetitions: repetitions) { target.copyMemory(from: source, byteCount: bytes) }
    }
}

/// Round reports from the server's callback.
private final class ReportLog: Sendable {
    private let storage = Mutex<[RoundReport]>([])
    func append(_ report: RoundReport) { storage.withLock { $0.append(report) } }
    var values: [RoundReport] { storage.withLock { $0 } }
}
