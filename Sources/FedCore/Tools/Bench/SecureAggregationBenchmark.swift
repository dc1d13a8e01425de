import FedIO
import FedLogic
import Foundation

/// The cost of one secure-aggregation round's protocol (``SecureAggregationClient`` and
/// ``SecureAggregationServer``), all parties in one process, one step after another: what each agent
/// computes, what the aggregator computes, and a plain modular sum of the same vectors for the ratio.
/// Transport and training are not included (`bench round` measures those).
package enum SecureAggregationBenchmark {
    package struct Result: Sendable {
        package var agents, threshold, dropped, dimension: Int
        /// Median over repeats: one agent's work over all its steps (the slowest agent).
        package var agentMilliseconds: Double
        /// The aggregator's work: collecting, forwarding and unmasking.
        package var aggregatorMilliseconds: Double
        /// A plain sum of the agents' vectors mod 2³² (what the aggregator does without secure aggregation).
        package var plainSumMilliseconds: Double

        package var jsonLine: String {
            String(format: #"{"agents": %d, "threshold": %d, "dropped": %d, "parameters": %d, "#
                   + #""secagg_agent_ms": %.1f, "secagg_aggregator_ms": %.1f, "plain_sum_ms": %.2f}"#,
                   agents, threshold, dropped, dimension, agentMilliseconds, aggregatorMilliseconds, plainSumMilliseconds)
        }
    }

    /// `agents` parties, threshold ⌊2n/3⌋ + 1, `dropped` of them silent after sharing their keys (the
    /// aggregator then rebuilds their mask keys and removes their pairwise masks: the costly case).
    package static func run(agents: Int, dimension: Int, dropped: Int, repeats: Int) throws -> Result {
        let threshold = 2 * agents / 3 + 1
        precondition(agents - dropped >= threshold, "too many dropped agents for the threshold")
        var agentTimes: [Double] = [], serverTimes: [Double] = [], plainTimes: [Double] = []
        let identities = (0..<agents).map { _ in SigningKeyPair() }
        let inputs = (0..<agents).map { party in (0..<dimension).map { UInt32(truncatingIfNeeded: $0 &* (party + 1)) } }
        for round in 0..<UInt64(repeats) {
            var perAgent = [Double](repeating: 0, count: agents)
            var serverTime = 0.0
            func timed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
                let start = ContinuousClock.now
                let value = try body()
                return (value, (ContinuousClock.now - start).inSeconds)
            }
            var server = SecureAggregationServer(round: round, threshold: threshold, dimension: dimension)
            let clients = (0..<agents).map {
                SecureAggregationClient(round: round, party: UInt64($0 + 1), threshold: threshold, dimension: dimension,
                                        identity: identities[$0])
            }
            for (index, client) in clients.enumerated() {
                let (keys, t) = try timed { try client.advertise() }
                perAgent[index] += t
                serverTime += try timed { try server.receive(keys: keys) }.1
            }
            let (roster, rosterTime) = try timed { try server.closeRoster() }
            serverTime += rosterTime
            for (index, client) in clients.enumerated() {
                let (shares, t) = try timed { try client.shareKeys(roster: roster) }
                perAgent[index] += t
                serverTime += try timed { try server.receive(shares: shares, from: client.party) }.1
            }
            let (forwarded, forwardTime) = try timed { try server.closeSharing() }
            serverTime += forwardTime
            let live = clients.dropFirst(dropped)
            for (index, client) in zip(live.indices, live) {
                let (masked, t) = try timed { try client.maskedInput(inputs[index], shares: forwarded[client.party] ?? []) }
                perAgent[index] += t
                serverTime += try timed { try server.receive(maskedInput: masked, from: client.party) }.1
            }
            let (survivors, closeTime) = try timed { try server.closeMaskedInput() }
            serverTime += closeTime
            for (index, client) in zip(live.indices, live) {
                let (signature, t) = try timed { try client.signSurvivors(survivors) }
                perAgent[index] += t
                serverTime += try timed { try server.receive(signature: signature, from: client.party) }.1
            }
            let (request, requestTime) = try timed { try server.unmaskRequest() }
            serverTime += requestTime
            for (index, client) in zip(live.indices, live) {
                let (response, t) = try timed { try client.unmask(request) }
                perAgent[index] += t
                serverTime += try timed { try server.receive(response: response) }.1
            }
            let (sum, sumTime) = try timed { try server.sum() }
            serverTime += sumTime
            let (plain, plainTime) = timed {
                var total = [UInt32](repeating: 0, count: dimension)
                for input in inputs.dropFirst(dropped) {
                    // unsafe: the baseline must add at memory speed, as the aggregator's own sum does.
                    total.withUnsafeMutableBufferPointer { t in input.withUnsafeBufferPointer { for i in 0..<$0.count { t[i] &+= $0[i] } } }
                }
                return total
            }
            guard sum == plain else { throw BenchmarkFailure(description: "secure sum differs from the plain sum") }
            agentTimes.append(perAgent.max() ?? 0)
            serverTimes.append(serverTime)
            plainTimes.append(plainTime)
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] * 1000 }
        return Result(agents: agents, threshold: threshold, dropped: dropped, dimension: dimension,
                      agentMilliseconds: median(agentTimes), aggregatorMilliseconds: median(serverTimes),
                      plainSumMilliseconds: median(plainTimes))
    }
}

/// A benchmark whose own check failed.
package struct BenchmarkFailure: Error, CustomStringConvertible {
    package var description: String
}
