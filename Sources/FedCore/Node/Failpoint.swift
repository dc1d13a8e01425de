import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Fault injection for the crash tests (`Tests/IntegrationTests/FaultInjectionTests.swift`): the
/// environment variable `FEDDRIFT_FAILPOINTS=step=N[,step=N…]` makes the process kill itself with
/// SIGKILL — no cleanup, no graceful shutdown, exactly a crash — the Nth time it reaches `step`.
/// Unset (always, outside those tests) a failpoint costs one dictionary lookup in an empty dictionary.
///
/// Each step sits where a crash is most likely to lose or double something: between a durable write and
/// the message that announces it, inside a transaction, between a send and its confirmation.
package enum Failpoint: String, CaseIterable, Sendable {
    /// The agent opened a round announcement and is about to train.
    case agentRoundReceived = "agent.round.received"
    /// Between two mini-batches of local training (the first hit is before the first batch).
    case agentTraining = "agent.training"
    /// The round's releases are charged to the ledger; nothing is sent yet.
    case agentBeforeSend = "agent.update.before-send"
    /// The update went to the socket; the aggregator's verdict has not arrived.
    case agentAfterSend = "agent.update.after-send"
    /// Inside the ledger's transaction, before it commits.
    case agentLedgerCharge = "agent.ledger.charge"
    /// Alerts were published (PUB and the JSONL file); they are not yet marked published.
    case agentAlertsPublished = "agent.alerts.published"
    /// A live-ingest message's events are durable; the next message is not read yet.
    case agentIngestStored = "agent.ingest.stored"
    /// A Kafka batch's events are durable and queued for scoring; its offsets are not committed yet.
    case agentKafkaStored = "agent.kafka.stored"
    /// An import batch and its progress are durable.
    case agentImportBatch = "agent.import.batch"
    /// The aggregator opened a round and announced it.
    case aggregatorRoundOpened = "aggregator.round.opened"
    /// The aggregator accepted an update (not yet in any checkpoint).
    case aggregatorUpdateAccepted = "aggregator.update.accepted"
    /// Inside the checkpoint's transaction, before it commits.
    case aggregatorCheckpointWrite = "aggregator.checkpoint.write"
    /// The checkpoint committed; the new model is not yet announced or exported.
    case aggregatorCheckpointSaved = "aggregator.checkpoint.saved"

    package static let environmentVariable = "FEDDRIFT_FAILPOINTS"

    /// The armed steps and on which hit each fires.
    private static let armed: [String: Int] = (try? parse(ProcessInfo.processInfo.environment[environmentVariable])) ?? [:]
    private static let hits = Mutex<[String: Int]>([:])

    package struct ParseError: Error, CustomStringConvertible {
        package let description: String
    }

    /// Parses `step=N,…` (N ≥ 1; `step` alone means 1), refusing unknown steps.
    package static func parse(_ text: String?) throws(ParseError) -> [String: Int] {
        guard let text, !text.isEmpty else { return [:] }
        var result: [String: Int] = [:]
        for item in text.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard let name = parts.first, Failpoint(rawValue: name) != nil else {
                throw ParseError(description: """
                    \(environmentVariable): unknown step '\(parts.first ?? "")'; the steps are \
                    \(allCases.map(\.rawValue).joined(separator: ", "))
                    """)
            }
            let count = parts.count > 1 ? Int(parts[1]) : 1
            guard let count, count >= 1 else {
                throw ParseError(description: "\(environmentVariable): '\(item)' needs a hit count ≥ 1 (step=N)")
            }
            result[name] = count
        }
        return result
    }

    /// Checks the environment at start: throws on a malformed value; returns a line for the log when
    /// failpoints are armed (a process that may crash on purpose says so), nil when none are.
    package static func checkEnvironment() throws(ParseError) -> String? {
        let parsed = try parse(ProcessInfo.processInfo.environment[environmentVariable])
        guard !parsed.isEmpty else { return nil }
        return "FAULT INJECTION ARMED (\(environmentVariable)): this process kills itself at "
            + parsed.sorted { $0.key < $1.key }.map { "\($0.key) (hit \($0.value))" }.joined(separator: ", ")
    }

    /// Marks that the process reached this step; SIGKILLs it when the step is armed for this hit.
    @inline(__always)
    package func reach() {
        guard !Self.armed.isEmpty, let target = Self.armed[rawValue] else { return }
        let hit = Self.hits.withLock { hits -> Int in
            hits[rawValue, default: 0] += 1
            return hits[rawValue, default: 0]
        }
        guard hit == target else { return }
        // The wall-clock time (Unix ms) lets a test measure from the crash itself (failover time).
        let line = "FAILPOINT \(rawValue) hit \(hit) at \(Int64(Date().timeIntervalSince1970 * 1000)): SIGKILL\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        kill(getpid(), SIGKILL)
    }
}
