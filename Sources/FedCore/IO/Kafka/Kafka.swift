internal import CRdKafka
import Foundation

/// A librdkafka failure: the call that failed and librdkafka's words for why.
package struct KafkaError: Error, CustomStringConvertible, Sendable, Equatable {
    package let operation: String
    package let reason: String
    package init(operation: String, reason: String) {
        (self.operation, self.reason) = (operation, reason)
    }
    package var description: String { "Kafka: could not \(operation): \(reason)" }

    init(operation: String, code: rd_kafka_resp_err_t) {
        self.init(operation: operation, reason: String(cString: rd_kafka_err2str(code)))
    }
}

/// RD_KAFKA_PARTITION_UA (a cast macro Swift does not import): let the partitioner choose.
private let unassignedPartition: Int32 = -1

/// One partition of a topic, and an offset in it (what a rebalance assigns, what a commit records).
package struct KafkaPartition: Hashable, Sendable, CustomStringConvertible {
    package var topic: String
    package var partition: Int32
    package init(topic: String, partition: Int32) { (self.topic, self.partition) = (topic, partition) }
    package var description: String { "\(topic)[\(partition)]" }
}

/// A record read from a partition: its offset, key and value, copied out of librdkafka's buffers.
package struct KafkaRecord: Sendable {
    package var partition: KafkaPartition
    package var offset: Int64
    package var key: [UInt8]?
    package var value: [UInt8]
}

/// librdkafka's configuration properties (`bootstrap.servers`, `security.protocol`, `sasl.*`, `ssl.*`, …:
/// librdkafka's CONFIGURATION.md), applied to a new handle; a property it refuses is an error naming it.
private func makeConfiguration(_ properties: [String: String]) throws(KafkaError) -> OpaquePointer {
    guard let conf = rd_kafka_conf_new() else { throw KafkaError(operation: "create a configuration", reason: "out of memory") }
    var errorText = [CChar](repeating: 0, count: 512)
    for (name, value) in properties.sorted(by: { $0.key < $1.key }) {
        let result = rd_kafka_conf_set(conf, name, value, &errorText, errorText.count)
        guard result == RD_KAFKA_CONF_OK else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(operation: "set the property \(name)", reason: String(decoding: errorText.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
    }
    return conf
}

/// Creates a handle from `conf` (which it takes over, also on failure).
private func makeHandle(_ type: rd_kafka_type_t, _ conf: OpaquePointer, what: String) throws(KafkaError) -> OpaquePointer {
    var errorText = [CChar](repeating: 0, count: 512)
    guard let handle = rd_kafka_new(type, conf, &errorText, errorText.count) else {
        rd_kafka_conf_destroy(conf)
        throw KafkaError(operation: "create the \(what)", reason: String(decoding: errorText.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return handle
}

/// Builds a librdkafka partition list (the caller destroys it).
private func makeList(_ entries: [(KafkaPartition, Int64)]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
    let list = rd_kafka_topic_partition_list_new(CInt(max(1, entries.count)))!
    for (partition, offset) in entries {
        let element = rd_kafka_topic_partition_list_add(list, partition.topic, partition.partition)!
        element.pointee.offset = offset
    }
    return list
}

private func entries(of list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> [(KafkaPartition, Int64, rd_kafka_resp_err_t)] {
    (0..<Int(list.pointee.cnt)).map { index in
        let element = list.pointee.elems[index]
        return (KafkaPartition(topic: String(cString: element.topic), partition: element.partition), element.offset, element.err)
    }
}

/// A consumer-group member (`group.id`, subscribed to topics) that assigns partitions itself at each
/// rebalance, at offsets its owner chooses, and commits only the offsets its owner says are durable
/// (`enable.auto.commit` and `enable.auto.offset.store` are off).
///
/// librdkafka handles are thread-safe, but this class is meant for one thread: the rebalance handler runs
/// inside ``poll(max:timeout:)``, on the polling thread.
package final class KafkaConsumer {
    /// A rebalance, seen by the handler inside ``poll(max:timeout:)``.
    package enum Rebalance {
        /// Partitions this member now owns, each with the group's committed offset (nil: none committed).
        /// The handler returns the offset to start reading each at (``beginning`` for the oldest retained).
        case assigned([(KafkaPartition, committed: Int64?)])
        /// Partitions taken away: commit what is durable before returning (unless `lost`: the member was
        /// out of the group too long, another owns them already and a commit would fail); their records stop
        /// arriving.
        case revoked([KafkaPartition], lost: Bool)
    }
    /// Start at the oldest record the partition retains.
    package static let beginning: Int64 = -2  // RD_KAFKA_OFFSET_BEGINNING

    /// State the C callbacks reach through the handle's opaque pointer.
    private final class Context {
        var handler: (Rebalance) -> [KafkaPartition: Int64] = { _ in [:] }
        /// librdkafka's own log lines (syslog level, text), from its threads.
        var log: @Sendable (Int32, String) -> Void = { _, _ in }
        var failure: KafkaError?
        var assigned: Set<KafkaPartition> = []
    }

    private let handle: OpaquePointer
    private let context: Context
    private var closed = false

    /// Joins `properties["group.id"]` and subscribes to `topics`; `rebalance` decides where each assigned
    /// partition starts and commits on revocation.
    /// - Parameter log: librdkafka's log lines (syslog level 0–7, text), called from librdkafka's threads;
    ///   without it they are dropped (librdkafka would write them to stderr, past the process's log format).
    package init(properties: [String: String], topics: [String], log: @escaping @Sendable (Int32, String) -> Void = { _, _ in },
                 rebalance: @escaping (Rebalance) -> [KafkaPartition: Int64]) throws(KafkaError) {
        var settings = properties
        settings["enable.auto.commit"] = "false"
        settings["enable.auto.offset.store"] = "false"
        settings["enable.partition.eof"] = "false"
        // Cooperative (incremental) rebalancing: only partitions that move are revoked, and a partition is
        // revoked from its old owner before a new one is given it, so a shopper's partition is never read by
        // two members at once (docs/PRIVACY.md, sharded regions). Eager strategies work too (every member
        // gives up everything at each rebalance and re-reads what it gets back).
        settings["partition.assignment.strategy"] = settings["partition.assignment.strategy"] ?? "cooperative-sticky"
        let conf = try makeConfiguration(settings)
        let context = Context()
        context.handler = rebalance
        context.log = log
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(context).toOpaque())
        rd_kafka_conf_set_log_cb(conf) { handle, level, facility, text in
            guard let handle, let opaque = rd_kafka_opaque(handle), let text else { return }
            let context = Unmanaged<Context>.fromOpaque(opaque).takeUnretainedValue()
            context.log(level, (facility.map { String(cString: $0) + ": " } ?? "") + String(cString: text))
        }
        rd_kafka_conf_set_rebalance_cb(conf) { handle, code, list, opaque in
            guard let handle, let list, let opaque else { return }
            let context = Unmanaged<Context>.fromOpaque(opaque).takeUnretainedValue()
            let partitions = entries(of: list)
            let cooperative = String(cString: rd_kafka_rebalance_protocol(handle)) == "COOPERATIVE"
            switch code {
            case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
                // The group's committed offsets for the new partitions, so the owner can tell history
                // (below them: another member scored it) from live records.
                let query = makeList(partitions.map { ($0.0, -1001  /* RD_KAFKA_OFFSET_INVALID */) })
                defer { rd_kafka_topic_partition_list_destroy(query) }
                let fetched = rd_kafka_committed(handle, query, 10_000)
                if fetched != RD_KAFKA_RESP_ERR_NO_ERROR {
                    context.failure = KafkaError(operation: "read the group's committed offsets", code: fetched)
                }
                let committed = Dictionary(entries(of: query).map { ($0.0, $0.1 >= 0 && $0.2 == RD_KAFKA_RESP_ERR_NO_ERROR ? $0.1 : nil) },
                                           uniquingKeysWith: { first, _ in first })
                let starts = context.handler(.assigned(partitions.map { ($0.0, committed[$0.0] ?? nil) }))
                let assignment = makeList(partitions.map { ($0.0, starts[$0.0] ?? KafkaConsumer.beginning) })
                defer { rd_kafka_topic_partition_list_destroy(assignment) }
                if cooperative {
                    if let error = rd_kafka_incremental_assign(handle, assignment) {
                        context.failure = KafkaError(operation: "take the assigned partitions",
                                                     reason: String(cString: rd_kafka_error_string(error)))
                        rd_kafka_error_destroy(error)
                    }
                    context.assigned.formUnion(partitions.map(\.0))
                } else {
                    let result = rd_kafka_assign(handle, assignment)
                    if result != RD_KAFKA_RESP_ERR_NO_ERROR {
                        context.failure = KafkaError(operation: "take the assigned partitions", code: result)
                    }
                    context.assigned = Set(partitions.map(\.0))
                }
            default:
                _ = context.handler(.revoked(partitions.map(\.0), lost: rd_kafka_assignment_lost(handle) != 0))
                if cooperative {
                    if let error = rd_kafka_incremental_unassign(handle, list) { rd_kafka_error_destroy(error) }
                    context.assigned.subtract(partitions.map(\.0))
                } else {
                    _ = rd_kafka_assign(handle, nil)
                    context.assigned = []
                }
            }
        }
        handle = try makeHandle(RD_KAFKA_CONSUMER, conf, what: "consumer")
        self.context = context
        rd_kafka_poll_set_consumer(handle)
        let list = makeList(topics.map { (KafkaPartition(topic: $0, partition: unassignedPartition), 0) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let result = rd_kafka_subscribe(handle, list)
        guard result == RD_KAFKA_RESP_ERR_NO_ERROR else {
            rd_kafka_destroy(handle)
            throw KafkaError(operation: "subscribe to \(topics.joined(separator: ", "))", code: result)
        }
    }

    deinit { close() }

    /// The partitions this member owns now.
    package var assignment: Set<KafkaPartition> { context.assigned }

    /// Up to `max` records, waiting at most `timeout` for the first (rebalances are handled meanwhile), and
    /// the errors librdkafka reported meanwhile (a topic that does not exist yet, brokers down: it retries
    /// them itself, the caller reports them). Thrown: a rebalance that could not be carried out.
    package func poll(max: Int, timeout: Duration) throws(KafkaError) -> (records: [KafkaRecord], errors: [KafkaError]) {
        var records: [KafkaRecord] = [], errors: [KafkaError] = []
        var wait = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        while records.count < max {
            guard let message = rd_kafka_consumer_poll(handle, wait) else { break }
            defer { rd_kafka_message_destroy(message) }
            wait = 0
            if let failure = context.failure {
                context.failure = nil
                throw failure
            }
            let entry = message.pointee
            if entry.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                if entry.err == RD_KAFKA_RESP_ERR__PARTITION_EOF { continue }
                let topic = entry.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? "the cluster"
                errors.append(KafkaError(operation: "read \(topic)", code: entry.err))
                continue
            }
            let value = entry.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: entry.len)) } ?? []
            let key = entry.key.map { Array(UnsafeRawBufferPointer(start: $0, count: entry.key_len)) }
            let topic = String(cString: rd_kafka_topic_name(entry.rkt))
            records.append(KafkaRecord(partition: KafkaPartition(topic: topic, partition: entry.partition),
                                       offset: entry.offset, key: key, value: value))
        }
        if let failure = context.failure {
            context.failure = nil
            throw failure
        }
        return (records, errors)
    }

    /// Commits, for each partition, the offset of the next record to read (everything before it durable).
    package func commit(_ offsets: [KafkaPartition: Int64], synchronously: Bool) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let list = makeList(offsets.map { ($0.key, $0.value) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let result = rd_kafka_commit(handle, list, synchronously ? 0 : 1)
        guard result == RD_KAFKA_RESP_ERR_NO_ERROR || result == RD_KAFKA_RESP_ERR__NO_OFFSET else {
            throw KafkaError(operation: "commit offsets", code: result)
        }
    }

    /// Leaves the group (revoking this member's partitions through the handler) and frees the handle.
    package func close() {
        guard !closed else { return }
        closed = true
        _ = rd_kafka_consumer_close(handle)
        rd_kafka_destroy(handle)
    }
}

/// A producer for tests, benchmarks and the simulator's Kafka output: `send` queues, `flush` waits until
/// every queued record is acknowledged or failed, and reports the failures.
package final class KafkaProducer {
    private final class Context {
        var failures = 0
        var lastFailure: String?
    }
    private let handle: OpaquePointer
    private let context = Context()
    private var topics: [String: OpaquePointer] = [:]

    package init(properties: [String: String]) throws(KafkaError) {
        let conf = try makeConfiguration(properties)
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(context).toOpaque())
        rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
            guard let message, let opaque, message.pointee.err != RD_KAFKA_RESP_ERR_NO_ERROR else { return }
            let context = Unmanaged<Context>.fromOpaque(opaque).takeUnretainedValue()
            context.failures += 1
            context.lastFailure = String(cString: rd_kafka_err2str(message.pointee.err))
        }
        handle = try makeHandle(RD_KAFKA_PRODUCER, conf, what: "producer")
    }

    deinit {
        _ = rd_kafka_flush(handle, 5_000)
        for topic in topics.values { rd_kafka_topic_destroy(topic) }
        rd_kafka_destroy(handle)
    }

    /// Queues one record (partition nil: chosen from the key by the partitioner); waits while the local
    /// queue is full.
    package func send(topic name: String, key: [UInt8]?, value: [UInt8], partition: Int32? = nil) throws(KafkaError) {
        let topic: OpaquePointer
        if let known = topics[name] {
            topic = known
        } else {
            guard let created = rd_kafka_topic_new(handle, name, nil) else {
                throw KafkaError(operation: "open topic \(name)", code: rd_kafka_last_error())
            }
            topics[name] = created
            topic = created
        }
        while true {
            let result = value.withUnsafeBytes { valueBytes in
                (key ?? []).withUnsafeBytes { keyBytes in
                    rd_kafka_produce(topic, partition ?? unassignedPartition, 0x2 /* RD_KAFKA_MSG_F_COPY */,
                                     UnsafeMutableRawPointer(mutating: valueBytes.baseAddress), valueBytes.count,
                                     key == nil ? nil : keyBytes.baseAddress, key == nil ? 0 : keyBytes.count, nil)
                }
            }
            if result == 0 { return }
            let code = rd_kafka_last_error()
            guard code == RD_KAFKA_RESP_ERR__QUEUE_FULL else { throw KafkaError(operation: "send to \(name)", code: code) }
            rd_kafka_poll(handle, 100)
        }
    }

    /// Waits until every queued record is acknowledged; throws if any failed.
    package func flush(timeout: Duration = .seconds(30)) throws(KafkaError) {
        let milliseconds = Int32(clamping: timeout.components.seconds * 1000)
        let result = rd_kafka_flush(handle, milliseconds)
        guard result == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(operation: "flush the producer", code: result) }
        if context.failures > 0 {
            defer { context.failures = 0 }
            throw KafkaError(operation: "deliver \(context.failures) records", reason: context.lastFailure ?? "unknown")
        }
    }
}

/// librdkafka's in-process mock Kafka cluster: real brokers speaking the Kafka protocol on loopback
/// ports, with consumer groups and offset commits, for tests and `bench ingest --kafka-mock`. Other
/// processes reach it at ``bootstrapServers``. It lives as long as this object.
package final class KafkaMockCluster: @unchecked Sendable {
    // unchecked: the handles are librdkafka's, thread-safe; nothing here mutates after init.
    private let handle: OpaquePointer
    private let cluster: OpaquePointer
    /// `host:port,…` of the brokers.
    package let bootstrapServers: String

    package init(brokers: Int = 1) throws(KafkaError) {
        let conf = try makeConfiguration(["log_level": "3"])
        handle = try makeHandle(RD_KAFKA_PRODUCER, conf, what: "mock cluster's handle")
        guard let created = rd_kafka_mock_cluster_new(handle, CInt(brokers)) else {
            rd_kafka_destroy(handle)
            throw KafkaError(operation: "start a mock cluster", reason: "librdkafka refused")
        }
        cluster = created
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(created))
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(handle)
    }

    /// Creates `topic` with `partitions` partitions.
    package func createTopic(_ topic: String, partitions: Int) throws(KafkaError) {
        let result = rd_kafka_mock_topic_create(cluster, topic, CInt(partitions), 1)
        guard result == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(operation: "create topic \(topic)", code: result) }
    }
}
