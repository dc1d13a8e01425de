import ArgumentParser
import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation

struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Utility vs privacy before deployment: the federation in one process, next to a central model.",
        discussion: """
            Runs DP-FedAvg with the same FedCore code as the agents and the aggregator (Poisson sampling with \
            the CSPRNG, per-user clipping, Gaussian noise at each region, fixed-denominator FedAvg, FedAdam) but \
            without sockets, calibrating the noise multiplier to each --epsilon over --rounds at --delta. Reports \
            held-out next-category HR@10 and NDCG@10 (full ranking over categories; each user's most recent event \
            held out) and the same for a centralized non-private model trained by the same code on the same split.

            Data: --data FILE with --format taobao|jsonl, or --data DIR --format ml100k (MovieLens 100K, genres as \
            categories); without --data, --users shoppers from the built-in simulator.

            --secure models secure aggregation with distributed DP: the aggregator sees only the regions' sum, so \
            each region adds 1/√regions of the noise and the sum carries the single-curator noise zS. \
            --accountant pld calibrates z by privacy loss distributions (tighter than RDP).

            Results go to stdout (one JSON object per ε with --json); progress goes to stderr: a bar over the \
            rounds on a terminal, a line every 10 s otherwise, and above it the set-up and every tenth round's \
            held-out HR@10.

            --agents N measures instead what one round costs the aggregator at N agents, in this process without \
            sockets: each agent's update (the model's size) encoded and sealed as an agent does, opened, decoded, \
            verified and held by the aggregator's real gate and coordinator, the close (FedAvg over N updates, the \
            server step) and the model file every agent downloads; it reports per-update and per-round costs, the \
            memory the held updates take and the bytes moved, and what they come to at 10,000 agents.

            Example:
              aggregator simulate --agents 1000
              aggregator simulate --users 100000 --rounds 200 --epsilon 1 2 4 8 inf --json
              aggregator simulate --users 100000 --rounds 200 --epsilon 2 --secure --accountant pld \
                --server-optimizer sgd --server-learning-rate 3 --seed 2
            """
    )

    @Option(name: .long, help: "Event file (taobao, jsonl) or MovieLens directory (ml100k). Default: the simulator.")
    var data: String?

    @Option(name: .long, help: "taobao, jsonl or ml100k.")
    var format: String = "taobao"

    @Option(name: .long, help: "Simulated shoppers when no --data is given.")
    var users = 100_000

    @Option(name: .long, help: "Days simulated.")
    var days = 9

    @Option(name: .long, help: "Regions (agents) the users are split over.")
    var regions = 3

    @Option(name: .long, help: "Federated rounds.")
    var rounds = 200

    @Option(name: .long, parsing: .upToNextOption, help: "Target ε values over all rounds; 'inf' = no noise.")
    var epsilon: [String] = ["2"]

    @Option(name: .long, help: "δ per user.")
    var delta = 1e-6

    @Option(name: .long, help: "q: users' probability of taking part in a round.")
    var samplingRate = 0.02

    @Option(name: .long, help: "S: L2 clip norm of each user's update.")
    var clipNorm = 1.0

    @Option(name: .long, help: "Server optimizer: adam (FedAdam) or sgd (FedAvgM, with --server-momentum).")
    var serverOptimizer = "adam"

    @Option(name: .long, help: "Server learning rate.")
    var serverLearningRate = 0.01

    @Option(name: .long, help: "Server momentum (sgd).")
    var serverMomentum = 0.9

    @Option(name: .long, help: "Most recent events per user used for training.")
    var sequenceLength = 30

    @Option(name: .long, help: "Model preset for taobao/jsonl/simulated data: small or medium.")
    var model = "small"

    @Option(name: .long, help: "Epochs of the centralized baseline (0: none).")
    var centralEpochs = 2

    @Option(name: .long, help: "Held-out users evaluated.")
    var evaluationUsers = 5_000

    @Option(name: .long, help: "Threads.")
    var threads = 2

    @Flag(name: .long, help: "Secure aggregation across regions: each adds noise zS/√regions, so the sum carries zS (distributed DP).")
    var secure = false

    @Option(name: .long, help: "With --secure: the threshold t (each region adds zS/√t; default t = --regions, the real rounds' default is a majority).")
    var secureThreshold: Int?

    @Option(name: .long, help: "Calibrate z by rdp (what agents' ledgers charge) or pld (tighter; exact for the simulator's Gaussian).")
    var accountant = "rdp"

    @Option(name: .long, help: "Seed of the simulated shoppers and of the model's initialisation (tune on one, report on another).")
    var seed: UInt64 = 1

    @Option(name: .long, help: "How the regions' updates are combined: mean (FedAvg), trimmed_mean or median (coordinate-wise, Byzantine-robust).")
    var aggregation = "mean"

    @Option(name: .long, help: "With --aggregation trimmed_mean: values dropped from each side of every coordinate.")
    var trim = 1

    @Option(name: .long, help: "Byzantine regions send scaled:F, sign-flip:F or backdoor:F (F: factor, default 10) instead of their honest update.")
    var attack: String?

    @Option(name: .long, help: "How many regions (the last ones) attack.")
    var attackers = 1

    @Option(name: .long, help: "The aggregator's bound on one update's L2 norm (default: S × the round's expected users).")
    var maxUpdateNorm: Double?

    @Flag(name: .long, help: "Seeded sampling and noise, so runs that differ only in --aggregation or --attack see the same users and noise (not private; for comparisons).")
    var reproducible = false

    @Flag(name: .long, help: "One JSON object per ε: epsilon, delta, hr10, ndcg10, central_hr10, central_ndcg10, users, rounds, secure, accountant. With --agents: one object of round costs.")
    var json = false

    @Option(name: .long, help: "Round cost instead of utility: this many agents' updates through the aggregator's path, in process (2 – 20,000).")
    var agents: Int?

    @Option(name: .long, help: "With --agents: rounds measured (the medians are reported).")
    var costRounds = 3

    func validate() throws {
        if let agents {
            guard (2...20_000).contains(agents) else { throw ValidationError("--agents must be between 2 and 20000") }
            guard (1...50).contains(costRounds) else { throw ValidationError("--cost-rounds must be between 1 and 50") }
        }
        guard ["taobao", "jsonl", "ml100k"].contains(format) else { throw ValidationError("--format: taobao, jsonl or ml100k") }
        guard LSTMShape.preset(named: model) != nil else { throw ValidationError("--model must be small or medium") }
        guard epsilon.allSatisfy({ $0 == "inf" || (Double($0) ?? 0) > 0 }) else {
            throw ValidationError("--epsilon takes positive numbers or 'inf'")
        }
        guard ["rdp", "pld"].contains(accountant) else { throw ValidationError("--accountant: rdp or pld") }
        if let secureThreshold {
            guard secure else { throw ValidationError("--secure-threshold needs --secure") }
            guard (1...regions).contains(secureThreshold) else {
                throw ValidationError("--secure-threshold must be between 1 and --regions (\(regions))")
            }
        }
        guard ["adam", "sgd"].contains(serverOptimizer) else { throw ValidationError("--server-optimizer: adam or sgd") }
        guard samplingRate > 0, samplingRate <= 1 else { throw ValidationError("--sampling-rate must be in (0, 1]") }
        guard AggregationRule(rule: aggregation, trim: trim) != nil else {
            throw ValidationError("--aggregation: mean, trimmed_mean (with --trim ≥ 1) or median")
        }
        if let attack, ByzantineAttack(attack) == nil {
            throw ValidationError("--attack: scaled:F, sign-flip:F or backdoor:F with a positive factor F")
        }
        guard (1...regions).contains(attackers) else { throw ValidationError("--attackers must be between 1 and --regions") }
        guard maxUpdateNorm.map({ $0 > 0 && $0.isFinite }) ?? true else { throw ValidationError("--max-update-norm must be positive") }
        guard centralEpochs >= 0 else { throw ValidationError("--central-epochs must be ≥ 0 (0: no central baseline)") }
        guard rounds >= 1, regions >= 1, users >= 10 else { throw ValidationError("--rounds, --regions ≥ 1, --users ≥ 10") }
    }

    func run() async throws {
        guard let shape = LSTMShape.preset(named: model) else { return }
        if let agents {
            try await cost(agents: agents)
            return
        }
        let keep = sequenceLength + 1
        let progress = ProgressReporter()
        let dataset: SimulationData
        if let data {
            dataset = format == "ml100k" ? try .movieLens(directory: data, keep: keep)
                : try .file(path: data, format: EventFormat(rawValue: format) ?? .taobao, shape: shape, keep: keep,
                            progress: progress)
        } else {
            dataset = .simulated(users: users, days: days, seed: seed, shape: shape, keep: keep, progress: progress)
        }
        progress.note(dataset.description)
        var settings = FederationSimulation.Settings()
        settings.regions = regions
        settings.rounds = rounds
        settings.samplingRate = samplingRate
        settings.clipNorm = clipNorm
        settings.serverLearningRate = serverLearningRate
        settings.serverOptimizer = serverOptimizer
        settings.serverMomentum = serverMomentum
        settings.sequenceLength = sequenceLength
        settings.delta = delta
        settings.threads = threads
        settings.centralEpochs = centralEpochs
        settings.evaluationUsers = evaluationUsers
        settings.secure = secure
        settings.secureThreshold = secureThreshold
        settings.accountant = accountant
        settings.seed = seed
        settings.aggregation = AggregationRule(rule: aggregation, trim: trim) ?? .mean
        settings.attack = attack.flatMap(ByzantineAttack.init)
        settings.attackers = attackers
        settings.maxUpdateNorm = maxUpdateNorm
        settings.reproducible = reproducible
        var central: NextCategoryEvaluation?
        for value in epsilon {
            settings.epsilon = value == "inf" ? nil : Double(value)
            let simulation = FederationSimulation(settings: settings, shape: dataset.shape,
                                                  outOfVocabulary: dataset.outOfVocabulary)
            let (result, baseline) = simulation.run(users: dataset.users, central: central, progress: progress)
            central = baseline
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf",
                                                                              nan: "nan")
                print(String(decoding: try encoder.encode(result), as: UTF8.self))
            } else {
                print(String(format: "ε = %@ (δ = %g, z = %.4f, q = %g, %d rounds, %d users): HR@10 %.4f NDCG@10 %.4f │ "
                             + "central HR@10 %.4f NDCG@10 %.4f │ ratio %.1f%% │ %.0f s",
                             result.epsilon.isFinite ? String(format: "%.3f", result.epsilon) : "∞", result.delta,
                             result.noiseMultiplier, result.samplingRate, result.rounds, result.users, result.hr10,
                             result.ndcg10, result.centralHR10, result.centralNDCG10,
                             100 * result.hr10 / max(result.centralHR10, 1e-12), result.seconds)
                      + (result.backdoorSuccess.map { String(format: " │ backdoor success %.4f", $0) } ?? ""))
            }
        }
    }

    /// `--agents N`: the round's cost at the aggregator, and what it comes to at 10,000 agents.
    private func cost(agents: Int) async throws {
        let progress = ProgressReporter()
        let result = try await RoundCostSimulation(agents: agents, preset: model, rounds: costRounds).run { progress.note($0) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
            return
        }
        let mib = 1_048_576.0, n = Double(agents), scale = 10_000 / n
        let inMiB = Double(result.updateBytes) * n / mib, outMiB = Double(result.modelBytes) * n / mib
        print(String(format: """
            round cost at %d agents, %@ model (%d parameters), median of %d rounds, in one process (no sockets, \
            receipts, secure aggregation or training):
              per update: the agent encodes and seals it in %.0f µs; the aggregator opens, decodes, verifies and \
            holds it in %.0f µs; %.0f KiB sealed
              per round: close (FedAvg over %d updates and the server step) %.0f ms; the model file (%.0f KiB) \
            encoded in %.1f ms, downloaded by every agent
              the aggregator's round: %.2f s of one core; %.0f MiB of held updates at the close; %.0f MiB in, %.0f MiB out
              at 10,000 agents (linear): %.1f s of one core, %.1f GiB held, %.1f GiB in and %.1f GiB out per round
            """, agents, model, result.parameters, result.rounds, result.agentSealMicroseconds,
            result.aggregatorUpdateMicroseconds, Double(result.updateBytes) / 1024, agents, result.closeMilliseconds,
            Double(result.modelBytes) / 1024, result.modelEncodeMilliseconds, result.aggregatorRoundMilliseconds / 1000,
            result.heldMiB, inMiB, outMiB, result.aggregatorRoundMilliseconds * scale / 1000,
            result.heldMiB * scale / 1024, inMiB * scale / 1024, outMiB * scale / 1024))
    }
}
