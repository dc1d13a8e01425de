package import FedIO
package import FedLogic
import Foundation
package import Logging
import Synchronization

/// One shard of a region reading its behaviour events from a Kafka topic as a member of the region's consumer
/// group (docs/OPERATIONS.md, "Sharded regions on Kafka"). Records are keyed by shopper id, so a shopper's
/// events all live in one partition, and a partition in one shard at a time.
///
/// Exactly once, stated:
/// - **Stored once.** Each batch's events are stored in one transaction together with each partition's next
///   offset (``EventStore/append(_:recordShoppers:)``, stream = partition); only then are the offsets
///   committed to the group. A record read again — after a crash before the commit, a restart, a rebalance — is
///   below the stored offset and skipped, so it is neither stored nor scored twice.
/// - **Scored once.** Records at or above the group's committed offset when the partition was assigned are
///   live: scored, and may raise alerts. Records below it were scored by the shard that held the partition
///   before; a shard that takes a partition over reads it from its oldest retained record as history, to
///   rebuild its shoppers' scoring state (no alert, not counted as scored). So a live event is scored only
///   after its offset is committed: a commit refused during a rebalance would otherwise leave an event this
///   shard scored below the group's offset, and the next owner would score it again (seen in
///   `KafkaShardTests` before this order). A crash between the commit and scoring leaves the event stored
///   and unscored; the restarted shard learns it as history.
/// - **A shopper in one shard.** When a partition is revoked the shard commits what it stored, then deletes
///   the partition's shoppers' events and scoring state (``EventStore/forgetStream(producer:stream:)``): from
///   then on they train and score only in the shard that owns the partition. With cooperative rebalancing a
///   partition is revoked from its old owner before it is assigned to a new one.
///
/// The consumer runs on a thread of its own (librdkafka's poll blocks); ``stop()`` ends it, after the current
/// batch, leaving the group so the partitions move on at once — and handing them over like any revocation, so
/// that a shopper is never in the store of a shard that does not own them. A restarted shard rebuilds its
/// partitions from their oldest records; a crashed one kept its store and resumes at its stored offsets.
package final class KafkaIngest: Sendable {
    /// What one batch did, for metrics and status.
    package struct BatchOutcome: Sendable {
        package var stored = 0
        package var refused = 0
        package var alreadyStored = 0
        package var history = 0
        package var seconds = 0.0
    }

    package struct Settings: Sendable {
        package var properties: [String: String]
        package var topic: String
        package var format: EventFormat
        package var batch: Int
        package init(properties: [String: String], topic: String, format: EventFormat, batch: Int) {
            (self.properties, self.topic, self.format, self.batch) = (properties, topic, format, batch)
        }
    }

    private let running = Atomic<Bool>(true)
    private let finished = Mutex<(done: Bool, error: KafkaError?, waiters: [CheckedContinuation<Void, Never>])>((false, nil, []))
    private let owned = Mutex<[Int32]>([])

    /// Starts consuming. `onBatch` sees each batch's outcome (on the consumer's thread).
    package init(settings: Settings, store: EventStore, scoring: LiveScoring, logger: Logger,
                 onBatch: @escaping @Sendable (BatchOutcome) -> Void) {
        let thread = Thread { [self] in
            var failure: KafkaError?
            do throws(KafkaError) {
                try consume(settings: settings, store: store, scoring: scoring, logger: logger, onBatch: onBatch)
            } catch {
                failure = error
            }
            let waiters = finished.withLock { state in
                state.done = true
                state.error = failure
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
        thread.name = "feddrift.kafka"
        thread.start()
    }

    /// Asks the consumer to finish its batch, commit and leave the group.
    package func stop() { running.store(false, ordering: .relaxed) }

    /// The partitions this shard owns now.
    package var partitions: [Int32] { owned.withLock { $0 } }

    /// Waits, without holding a thread, until the consumer has left the group; throws what ended it early.
    package func finish() async throws(KafkaError) {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = finished.withLock { state -> Bool in
                if !state.done { state.waiters.append(continuation) }
                return state.done
            }
            if done { continuation.resume() }
        }
        if let error = finished.withLock({ $0.error }) { throw error }
    }

    private func consume(settings: Settings, store: EventStore, scoring: LiveScoring, logger: Logger,
                         onBatch: (BatchOutcome) -> Void) throws(KafkaError) {
        let producer = "kafka:\(settings.topic)"
        /// Per owned partition: the group's committed offset when it was assigned (records below it are history).
        var liveFrom: [KafkaPartition: Int64] = [:]
        var storeFailure: (any Error)?
        func stream(_ partition: KafkaPartition) -> String { "\(partition.partition)" }
        /// Offsets stored and not yet committed (each above the group's offset at assignment: a shard re-reading
        /// a partition's history never moves the group's position back).
        var uncommitted: [KafkaPartition: Int64] = [:]
        /// Live events stored and not yet scored: they are scored only once their offsets are committed. The
        /// group's offset is what a shard taking a partition over treats as scored, so an event this shard
        /// scored under an offset it failed to commit (a commit refused during a rebalance) would be scored
        /// again by the next owner.
        var pending: [(partition: KafkaPartition, events: [BehaviorEvent], ids: ClosedRange<Int64>?)] = []
        var commitWarnings = LogThrottle(every: .seconds(10))
        /// Commits `offsets`; on success scores the pending live events of those partitions.
        func commit(_ offsets: [KafkaPartition: Int64], through consumer: KafkaConsumer?) -> Bool {
            guard !offsets.isEmpty, let consumer else { return true }
            do {
                try consumer.commit(offsets, synchronously: true)
            } catch {
                if let notLogged = commitWarnings.due() {
                    logger.warning("Could not commit Kafka offsets; their live events wait to be scored until a commit succeeds",
                                   metadata: ["error": "\(error)", "failures.not_logged_since_last_line": "\(notLogged)"])
                }
                return false
            }
            for (partition, offset) in offsets where uncommitted[partition] == offset { uncommitted[partition] = nil }
            let committed = Set(offsets.keys)
            for entry in pending where committed.contains(entry.partition) { scoring.submit(entry.events, ids: entry.ids) }
            pending.removeAll { committed.contains($0.partition) }
            return true
        }
        // The rebalance handler commits through the consumer; it runs only inside poll, after this is set.
        var commitTarget: KafkaConsumer?
        let consumer = try KafkaConsumer(properties: settings.properties, topics: [settings.topic], log: { level, text in
            // librdkafka's syslog levels: 0–3 errors, 4 warnings, 5–6 notices and information, 7 debug.
            logger.log(level: level <= 3 ? .error : level == 4 ? .warning : level <= 6 ? .info : .debug, "librdkafka: \(text)")
        }) { rebalance in
            switch rebalance {
            case let .assigned(partitions):
                var starts: [KafkaPartition: Int64] = [:]
                for (partition, committed) in partitions {
                    liveFrom[partition] = committed ?? 0
                    do {
                        let next = try store.nextOffset(producer: producer, stream: stream(partition))
                        // Held before (a restart): resume after what is stored. New here: from the oldest record,
                        // to rebuild the partition's shoppers' history.
                        starts[partition] = next > 0 ? next : KafkaConsumer.beginning
                    } catch {
                        storeFailure = error
                    }
                }
                logger.info("Kafka partitions assigned", metadata: [
                    "partitions": "\(partitions.map(\.0.partition).sorted())",
                    "live_from": "\(partitions.map { $0.committed ?? 0 })",
                ])
                return starts
            case let .revoked(partitions, _) where partitions.isEmpty:
                return [:]  // cooperative rebalancing reports "nothing revoked" too
            case let .revoked(partitions, lost):
                // Committed: this shard scores what it stored (the next owner sees it as history). Not committed
                // (lost, or refused): the next owner reads it as live and scores it; this shard drops it.
                let revoked = Set(partitions)
                let offsets = uncommitted.filter { revoked.contains($0.key) }
                let committed = !lost && commit(offsets, through: commitTarget)
                if !committed, !offsets.isEmpty {
                    logger.warning("Handing partitions over with offsets not committed: their new shard scores those events",
                                   metadata: ["partitions": "\(offsets.keys.map(\.partition).sorted())"])
                }
                pending.removeAll { revoked.contains($0.partition) }
                var handedOver = 0
                for partition in partitions {
                    liveFrom[partition] = nil
                    uncommitted[partition] = nil
                    do {
                        let users = try store.forgetStream(producer: producer, stream: stream(partition))
                        scoring.forget(users)
                        handedOver += users.count
                    } catch {
                        storeFailure = error
                    }
                }
                logger.info("Kafka partitions revoked: their shoppers now live in another shard", metadata: [
                    "partitions": "\(partitions.map(\.partition).sorted())", "lost": "\(lost)", "shoppers": "\(handedOver)",
                ])
                return [:]
            }
        }
        commitTarget = consumer
        defer {
            consumer.close()  // revokes (commits, hands over) and leaves the group
            commitTarget = nil
        }
        logger.info("Kafka ingest joined its group", metadata: [
            "topic": "\(settings.topic)", "group": "\(settings.properties["group.id"] ?? "")",
        ])
        var refusals = LogThrottle(every: .seconds(1)), brokerWarnings = LogThrottle(every: .seconds(10))
        while running.load(ordering: .relaxed) {
            // Scoring far behind, or commits refused for that long: wait (the records stay in Kafka).
            while running.load(ordering: .relaxed), scoring.backlogEvents > LiveScoring.maxBacklogEvents
                || pending.reduce(0, { $0 + $1.events.count }) > LiveScoring.maxBacklogEvents {
                if !pending.isEmpty, !commit(uncommitted, through: consumer) { Thread.sleep(forTimeInterval: 0.1) }
                Thread.sleep(forTimeInterval: 0.005)
            }
            let (records, errors) = try consumer.poll(max: settings.batch, timeout: .milliseconds(200))
            owned.withLock { $0 = consumer.assignment.map(\.partition).sorted() }
            if let error = storeFailure {
                throw KafkaError(operation: "use the event store at a rebalance", reason: "\(error)")
            }
            // librdkafka retries these itself (brokers down, a topic not created yet): report, at most every 10 s.
            if let error = errors.last, let notLogged = brokerWarnings.due(count: errors.count) {
                logger.warning("Kafka reports a problem; retrying", metadata: [
                    "error": "\(error)", "errors.not_logged_since_last_line": "\(notLogged)",
                ])
            }
            guard !records.isEmpty else {
                _ = commit(uncommitted, through: consumer)  // a commit refused during a rebalance, tried again
                continue
            }
            let started = ContinuousClock.now
            var outcome = BatchOutcome()
            var runs: [(partition: KafkaPartition, floor: Int64, first: Int64, last: Int64)] = []
            var batches: [EventStore.StreamBatch] = []
            for (partition, run) in Dictionary(grouping: records, by: \.partition).sorted(by: { $0.key.partition < $1.key.partition }) {
                // A partition revoked during this poll: its records are no longer this shard's.
                guard let floor = liveFrom[partition] else { continue }
                let first = run[0].offset, last = run[run.count - 1].offset
                var events: [(row: Int, event: BehaviorEvent)] = []
                for record in run {
                    let row = Int(record.offset - first)
                    let key = record.key.map { String(decoding: $0, as: UTF8.self) }
                    let text = String(decoding: record.value, as: UTF8.self)
                    for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
                        do {
                            let event = try EventParser.parse(line, format: settings.format, line: row + 1)
                            // Sharding by shopper is what keeps a shopper in one shard: a record keyed otherwise
                            // would put the same shopper in two.
                            guard key == String(event.user) else {
                                throw KafkaError(operation: "accept \(partition)@\(record.offset)",
                                                 reason: "its key \(key == nil ? "is missing" : "is not its event's user id")")
                            }
                            events.append((row, event))
                        } catch {
                            outcome.refused += 1
                            if let notLogged = refusals.due() {
                                logger.warning("Refused Kafka record", metadata: [
                                    "partition": "\(partition.partition)", "offset": "\(record.offset)", "error": "\(error)",
                                    "refused.not_logged_since_last_line": "\(notLogged)",
                                ])
                            }
                        }
                    }
                }
                runs.append((partition, floor, first, last))
                batches.append(EventStore.StreamBatch(
                    events: events, position: .init(producer: producer, stream: stream(partition), first: first),
                    rows: Int(last - first + 1)))
            }
            // Every partition's events and offsets in one transaction (one fsync per poll).
            let appended: [EventStore.StreamAppend]
            do {
                appended = try store.append(batches, recordShoppers: true)
            } catch {
                throw KafkaError(operation: "store \(records.count) records", reason: "\(error)")
            }
            for ((partition, floor, first, last), (batch, appended)) in zip(runs, zip(batches, appended)) {
                let kept = batch.events.filter { $0.row >= appended.skippedRows }
                outcome.alreadyStored += appended.skippedRows
                // Rows below the group's committed offset (at assignment) are history; the rest are live. Stored
                // in offset order, so the history comes first in the ids.
                let historyCount = kept.prefix { first + Int64($0.row) < floor }.count
                let ids = appended.ids
                let historyIDs = ids.flatMap { historyCount > 0 ? $0.lowerBound...($0.lowerBound + Int64(historyCount) - 1) : nil }
                let liveIDs = ids.flatMap { historyCount < kept.count ? ($0.lowerBound + Int64(historyCount))...$0.upperBound : nil }
                scoring.absorb(kept.prefix(historyCount).map(\.event), ids: historyIDs)
                if historyCount < kept.count {
                    pending.append((partition, kept.dropFirst(historyCount).map(\.event), liveIDs))
                }
                outcome.history += historyCount
                outcome.stored += kept.count
                if last + 1 > floor { uncommitted[partition] = max(uncommitted[partition] ?? 0, last + 1) }
            }
            Failpoint.agentKafkaStored.reach()
            // Synchronously, before the next poll can hand a partition over; the live events are scored after.
            _ = commit(uncommitted, through: consumer)
            outcome.seconds = (ContinuousClock.now - started).inSeconds
            onBatch(outcome)
        }
        logger.info("Kafka ingest leaving its group")
    }
}
