import ArgumentParser
import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation
import Logging

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the aggregator (release builds only give meaningful numbers).",
        subcommands: [BenchRound.self, BenchSecureAggregation.self]
    )
}

struct BenchRound: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "round",
        abstract: "Round overhead without local training, plus opening and summing rates, in one run.",
        discussion: """
            Starts an aggregator and --agents in-process agents on loopback (CURVE, sealed envelopes, \
            real checkpoint in a temporary directory) whose updates are ready-made, and times 20 rounds \
            from announcement to durable checkpoint: announcement, model download, sealing, sending, \
            opening, verifying, averaging, checkpoint and model export. Then, in the same process: opening \
            sealed updates next to libsodium's raw AEAD rate (same chunking and cores), and summing float32 \
            updates next to memcpy bandwidth. With --secure, the same rounds run again with secure \
            aggregation (keys, shares, masked updates, signatures, unmasking) and both medians are reported \
            (JSON: plain_round_p50_ms, secure_round_p50_ms).
            """
    )

    @Flag(name: .long, help: "Also time the rounds with secure aggregation, in the same run (3 or more agents).")
    var secure = false

    @Option(name: .long, help: "In-process agents.")
    var agents = 8

    @Option(name: .long, help: "Model preset: small or medium.")
    var model = "medium"

    @Option(name: .long, help: "Measured rounds (after one warm-up round).")
    var rounds = 20

    @Flag(name: .long, help: "One JSON object.")
    var json = false

    func validate() throws {
        guard LSTMShape.preset(named: model) != nil else { throw ValidationError("--model must be small or medium") }
        guard (1...64).contains(agents) else { throw ValidationError("--agents must be between 1 and 64") }
        guard (2...1000).contains(rounds) else { throw ValidationError("--rounds must be between 2 and 1000") }
        guard !secure || agents >= AggregatorConfiguration.secureMinimumAgents else {
            throw ValidationError("--secure needs --agents \(AggregatorConfiguration.secureMinimumAgents) or more")
        }
    }

    func run() async throws {
        let logger = Logger.bootstrapForTool(label: "aggregator", level: .error)
        let result = try await RoundBenchmark(agents: agents, preset: model, rounds: rounds, secure: secure).run(logger: logger) { line in
            if !json { FileHandle.standardError.write(Data("\(line)\n".utf8)) }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
        } else {
            print(String(format: """
                round overhead (%d agents, %@ model, %d parameters, %d rounds): p50 %.1f ms, p99 %.1f ms (closing: p50 %.1f ms)
                opening sealed updates: %.2f GB/s vs raw AEAD %.2f GB/s (%.0f%%)
                summing float32 updates: %.2f GB/s vs memcpy %.2f GB/s (%.0f%%)
                """, result.agents, result.model, result.parameters, result.rounds, result.roundP50Milliseconds,
                result.roundP99Milliseconds, result.closeP50Milliseconds, result.openGbps, result.aeadGbps, 100 * result.openGbps / result.aeadGbps,
                result.aggregateGbps, result.memcpyGbps, 100 * result.aggregateGbps / result.memcpyGbps))
            if let secure = result.secureRoundP50Milliseconds, let p99 = result.secureRoundP99Milliseconds {
                print(String(format: "secure-aggregation round: p50 %.1f ms, p99 %.1f ms (%.2f× the plain round)",
                             secure, p99, secure / result.roundP50Milliseconds))
            }
        }
    }
}

struct BenchSecureAggregation: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secure-aggregation",
        abstract: "The secure-aggregation protocol's computation per agent and at the aggregator, beside a plain sum.",
        discussion: """
            Runs every step of one secure-aggregation round for --agents parties in this process, one after \
            another (X25519 keys, Shamir shares of each agent's mask key and self-mask seed boxed for every \
            other agent, ChaCha20 masks mod 2^32 over the model's parameters, signed survivor list, unmasking), \
            checks the unmasked sum against the plain sum and reports the slowest agent's total and the \
            aggregator's total (medians of --repeats rounds). --dropped agents go silent after sharing keys, so \
            the aggregator rebuilds their mask keys and removes their pairwise masks. Transport is not \
            included: on a real federation the agents compute in parallel on their own nodes.

            Example: aggregator bench secure-aggregation --agents 8 --model medium --json
            """
    )

    @Option(name: .long, help: "Agents in the round (threshold ⌊2n/3⌋ + 1).")
    var agents = 8

    @Option(name: .long, help: "Model preset whose parameter count is the vector length: small or medium.")
    var model = "medium"

    @Option(name: .long, help: "Agents that drop after sharing their keys.")
    var dropped = 0

    @Option(name: .long, help: "Measured rounds; the medians are reported.")
    var repeats = 5

    @Flag(name: .long, help: "One JSON object: agents, threshold, dropped, parameters, secagg_agent_ms, secagg_aggregator_ms, plain_sum_ms.")
    var json = false

    func validate() throws {
        guard LSTMShape.preset(named: model) != nil else { throw ValidationError("--model must be small or medium") }
        guard (2...512).contains(agents) else { throw ValidationError("--agents must be between 2 and 512") }
        guard dropped >= 0, agents - dropped >= 2 * agents / 3 + 1 else {
            throw ValidationError("--dropped must leave at least the threshold ⌊2n/3⌋ + 1 = \(2 * agents / 3 + 1) agents")
        }
        guard (1...100).contains(repeats) else { throw ValidationError("--repeats must be between 1 and 100") }
    }

    func run() throws {
        guard let shape = LSTMShape.preset(named: model) else { return }
        let result = try SecureAggregationBenchmark.run(agents: agents, dimension: shape.layout.count, dropped: dropped,
                                                        repeats: repeats)
        if json {
            print(result.jsonLine)
        } else {
            print(String(format: """
                secure aggregation, %d agents (threshold %d, %d dropped), %d parameters (%@):
                  slowest agent, all steps: %.1f ms   aggregator, all steps: %.1f ms   plain sum: %.2f ms
                """, result.agents, result.threshold, result.dropped, result.dimension, model,
                result.agentMilliseconds, result.aggregatorMilliseconds, result.plainSumMilliseconds))
        }
    }
}
