import ArgumentParser
import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure this node (release builds only give meaningful numbers).",
        subcommands: [BenchTransport.self, BenchTrain.self, BenchScore.self, BenchDrift.self, BenchAgent.self,
                      BenchNoise.self, BenchIngest.self]
    )
}

struct BenchTransport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transport",
        abstract: "DEALER→ROUTER throughput on loopback: raw, CURVE, sealed envelope, sealed + CURVE.",
        discussion: "Sizes 64 KiB and 4 MiB, all in one run, so the ratios compare like with like."
    )

    @Flag(name: .long, help: "One JSON object per line and size.")
    var json = false

    @Option(name: .long, help: "Bytes moved per variant and size (default 1 GiB).")
    var bytes: Int = 1 << 30

    @Option(name: .long, parsing: .upToNextOption, help: "Message sizes in bytes (default 65536 4194304).")
    var size: [Int] = [64 << 10, 4 << 20]

    func validate() throws {
        guard size.allSatisfy({ $0 > 0 && $0 <= 256 << 20 }) else {
            throw ValidationError("--size takes sizes from 1 byte to 256 MiB")
        }
        guard bytes > 0 else { throw ValidationError("--bytes must be positive") }
    }

    func run() async throws {
        let results = try await TransportBenchmark(bytesPerVariant: bytes, sizes: size).run { progress in
            if !json { print(progress) }
        }
        for result in results { print(json ? result.jsonLine : result.table) }
    }
}

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Training speed: sequences/s for plain and per-example-clipped (DP) training.",
        discussion: "Batch 64; T = 50 for small, 100 for medium. GFLOP/s count the GEMMs of forward and backward."
    )

    @Option(name: .long, help: "Model preset: small (C=1024, E=32, H=64) or medium (C=4096, E=64, H=128).")
    var model = "small"

    @Option(name: .long, help: "Threads; examples of a batch are split across them.")
    var threads = 1

    @Option(name: .long, help: "Seconds to measure each mode.")
    var seconds = 5.0

    @Flag(name: .long, help: "One JSON object.")
    var json = false

    func validate() throws {
        guard LSTMShape.preset(named: model) != nil else { throw ValidationError("--model must be small or medium") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        guard let shape = LSTMShape.preset(named: model) else { return }
        let result = ModelBenchmark.train(model: model, shape: shape, threads: threads, seconds: seconds)
        if json {
            print(result.jsonLine)
        } else {
            print("""
                \(model) (\(shape)), \(threads) thread(s), batch 64, T = \(ModelBenchmark.steps(for: model)):
                  plain training          \(String(format: "%8.1f", result.plainSequencesPerSecond)) sequences/s
                  per-example clipped     \(String(format: "%8.1f", result.clippedSequencesPerSecond)) sequences/s \
                (×\(String(format: "%.2f", result.clippedSequencesPerSecond / result.plainSequencesPerSecond)) of plain)
                """)
        }
    }
}

struct BenchScore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score",
        abstract: "Streaming scoring latency, one event at a time: the LSTM step, then the full live path.",
        discussion: """
            Two lines (or two JSON objects): the LSTM step alone, and the full per-event path of live scoring             (user state lookup, LSTM step, drift update, threshold check, item popularity) with --users users'             state resident (the same as `bench drift`).
            """
    )

    @Option(name: .long, help: "Model preset: small or medium.")
    var model = "small"

    @Option(name: .long, help: "Events to score.")
    var events = 200_000

    @Option(name: .long, help: "Users resident for the full path (0 skips it).")
    var users = 100_000

    @Flag(name: .long, help: "One JSON object.")
    var json = false

    func validate() throws {
        guard LSTMShape.preset(named: model) != nil else { throw ValidationError("--model must be small or medium") }
        guard events >= 100 else { throw ValidationError("--events must be at least 100") }
        guard users >= 0 else { throw ValidationError("--users must be ≥ 0") }
    }

    func run() throws {
        guard let shape = LSTMShape.preset(named: model) else { return }
        let result = ModelBenchmark.score(model: model, shape: shape, events: events)
        if json {
            print(result.jsonLine)
        } else {
            print(String(format: "%@ LSTM step: p50 %.2f µs, p99 %.2f µs, %.0f events/s", model, result.p50Microseconds,
                         result.p99Microseconds, result.eventsPerSecond))
        }
        guard users > 0 else { return }
        let full = DriftBenchmark.run(model: model, shape: shape, users: users, events: events)
        if json {
            print(full.jsonLine)
        } else {
            print(String(format: "%@ full path, %d users resident: p50 %.2f µs, p99 %.2f µs, %.0f events/s, "
                         + "%.0f bytes per user state", model, full.users, full.p50Microseconds, full.p99Microseconds,
                         full.eventsPerSecond, full.bytesPerUser))
        }
    }
}

struct BenchAgent: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Size a regional node: import N simulated shoppers, train one round over them, score 100k events.",
        discussion: "Reports peak resident memory, import rate, training round time and scoring rate, in one process."
    )

    @Option(name: .long, help: "Shoppers on this node.")
    var users = 10_000

    @Option(name: .long, help: "Model preset: small or medium.")
    var model = "small"

    @Option(name: .long, help: "Threads for training.")
    var threads = 1

    @Flag(name: .long, help: "One JSON object.")
    var json = false

    func validate() throws {
        guard LSTMShape.preset(named: model) != nil else { throw ValidationError("--model must be small or medium") }
        guard users > 0, threads > 0 else { throw ValidationError("--users and --threads must be positive") }
    }

    func run() throws {
        guard let shape = LSTMShape.preset(named: model) else { return }
        let result = try AgentBenchmark.run(users: users, model: model, shape: shape, threads: threads) { step in
            if !json {
                FileHandle.standardError.write(Data(String(format: "  %@ (peak RSS so far %.1f MiB)\n", step,
                                                            AgentBenchmark.peakRSSMiB()).utf8))
            }
        }
        if json {
            print(result.jsonLine)
        } else {
            print(String(format: """
                %d shoppers (%d events), %@ model:
                  peak resident memory   %.1f MiB
                  import                 %.0f events/s
                  one training round     %.2f s
                  scoring                %.0f events/s
                """, result.users, result.events, model, result.peakRSSMiB, result.importEventsPerSecond,
                         result.trainRoundSeconds, result.scoreEventsPerSecond))
        }
    }
}

struct BenchDrift: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drift",
        abstract: "Live scoring's full per-event path with many users resident: p50/p99, events/s, bytes per user.",
        discussion: """
            One event at a time, as the agent's scoring thread does it: the user's slot (model input ring, \
            purchases), item popularity, the churn clock (every resident user's silence checked once an hour \
            of event time; one event a second here) and churn state, the switch detector and the alert rule. \
            The LSTM state is not stepped per event: it is built from the user's last 50 events when an alert \
            or a query needs recommendations (edge-agent bench score measures one LSTM step alone).
            """
    )

    @Option(name: .long, help: "Model preset: small or medium.")
    var model = "small"

    @Option(name: .long, help: "Users whose state is resident.")
    var users = 100_000

    @Option(name: .long, help: "Events to score after warming every user.")
    var events = 200_000

    @Flag(name: .long, help: "One JSON object.")
    var json = false

    func validate() throws {
        guard LSTMShape.preset(named: model) != nil else { throw ValidationError("--model must be small or medium") }
        guard users >= 1, events >= 100 else { throw ValidationError("--users ≥ 1 and --events ≥ 100") }
    }

    func run() throws {
        guard let shape = LSTMShape.preset(named: model) else { return }
        let result = DriftBenchmark.run(model: model, shape: shape, users: users, events: events)
        if json {
            print(result.jsonLine)
        } else {
            print(String(format: "%@, %d users resident: p50 %.2f µs, p99 %.2f µs, %.0f events/s, %.0f bytes per user state, "
                         + "%d alerts", model, result.users, result.p50Microseconds, result.p99Microseconds,
                         result.eventsPerSecond, result.bytesPerUser, result.alerts))
        }
    }
}

struct BenchNoise: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "noise",
        abstract: "The update's exact noise: the discrete Gaussian on the quantised sum beside a snapped float Gaussian.",
        discussion: """
            Times one release of a whole model update (noise multiplier 1.6, S = 1): the quantisation to S/2^20 \
            and the Canonne–Kamath–Steinke sampler over the buffered CSPRNG, as agents do it, and, in the same \
            run over the same CSPRNG, the snapped Box–Muller noise it replaced. Medians of --repeats runs.
            """
    )

    @Option(name: .long, help: "Model preset: small or medium.")
    var model = "small"

    @Option(name: .long, help: "Timed runs of each.")
    var repeats = 5

    @Flag(name: .long, help: "One JSON object.")
    var json = false

    func validate() throws {
        guard LSTMShape.preset(named: model) != nil else { throw ValidationError("--model must be small or medium") }
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1") }
    }

    func run() throws {
        guard let shape = LSTMShape.preset(named: model) else { return }
        let result = NoiseBenchmark.run(shape: shape, repeats: repeats)
        if json {
            print(result.jsonLine)
        } else {
            print(String(format: "%@ (%d parameters): discrete Gaussian %.1f ms (%.1f ns per coordinate), snapped float "
                         + "Gaussian %.1f ms: %.2f× the time", model, result.parameters, result.discreteSeconds * 1000,
                         result.discreteSeconds / Double(result.parameters) * 1e9, result.floatingSeconds * 1000,
                         result.discreteSeconds / result.floatingSeconds))
        }
    }
}
