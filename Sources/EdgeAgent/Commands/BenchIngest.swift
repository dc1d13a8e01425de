import ArgumentParser
import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation
import Logging
import Synchronization

struct BenchIngest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Live ingest end to end: events/s from arrival into the store and through scoring.",
        discussion: """
            Simulated shoppers' events, in time order, go through the agent's real ingest path into a fresh store \
            (SQLite, durable commits) and are scored by the live scoring thread with a model installed; the clock \
            stops when the last event is scored. The PULL socket path (messages of --batch rows with a stream \
            header, on loopback) always runs; --kafka-mock also runs the Kafka path in the same process: the \
            events are first produced to librdkafka's mock cluster (real brokers on loopback; not timed), then \
            one shard consumes them as a group member (batches of --batch records, offsets committed after each \
            store); its rate counts from the first batch stored, and the time spent joining the group before it is \
            reported beside it. Ratios between the two compare like with like.

            Example:
              edge-agent bench ingest --kafka-mock
            """
    )

    @Flag(name: .customLong("kafka-mock"), help: "Also measure Kafka ingestion against librdkafka's mock cluster.")
    var kafkaMock = false

    @Option(name: .long, help: "Simulated shoppers (3 days each, about 34 events each).")
    var users = 10_000

    @Option(name: .long, help: "Rows per PULL message and records per Kafka batch.")
    var batch = 1_000

    @Option(name: .long, help: "Partitions of the mock cluster's topic.")
    var partitions = 8

    @Flag(name: .long, help: "One JSON object.")
    var json = false

    func validate() throws {
        guard users > 0, batch > 0, batch <= 100_000, partitions > 0, partitions <= 1_000 else {
            throw ValidationError("--users must be positive, --batch 1 to 100000, --partitions 1 to 1000")
        }
    }

    private func note(_ text: String) {
        if !json { FileHandle.standardError.write(Data("  \(text)\n".utf8)) }
    }

    func run() async throws {
        var simulation = ShopperSimulator.Parameters()
        simulation.users = users
        simulation.days = 3
        let events = ShopperSimulator(parameters: simulation).run().events.sorted { $0.timestamp < $1.timestamp }
        let rows = events.map(\.taobaoRow)
        var items: [UInt64: Set<UInt64>] = [:]
        CategoryCatalog.itemsPerCategory(events, into: &items)
        let catalog = CategoryCatalog(itemsPerCategory: items.mapValues(\.count), categories: 1024)
        guard let shape = LSTMShape.preset(named: "small") else { return }
        let parameters = LSTMParameters<Float>(shape: LSTMShape(categories: catalog.categories, embedding: shape.embedding,
                                                                hidden: shape.hidden), seed: 1)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-bench-ingest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        note("\(events.count) events of \(users) shoppers")

        func fresh(_ name: String) throws -> (EventStore, LiveScoring) {
            let store = try EventStore(path: scratch.appendingPathComponent("\(name).sqlite").path)
            let scoring = LiveScoring(catalog: catalog, settings: DriftEngine.Settings(region: "bench"), store: store, logger: logger)
            scoring.install(parameters, modelVersion: 1)
            return (store, scoring)
        }
        /// Waits until `scoring` scored every event; returns the time since `started`.
        func scored(_ scoring: LiveScoring, since started: ContinuousClock.Instant) async throws -> Double {
            while scoring.progress.eventsScored < events.count {
                try await Task.sleep(for: .milliseconds(2))
            }
            return (ContinuousClock.now - started).inSeconds
        }

        // The PULL socket path: the agent's IngestService, fed by a PUSH client on loopback.
        let (pullStore, pullScoring) = try fresh("pull")
        let context = try ZMQContext()
        var options = ZMQSocketOptions()
        options.receiveHighWaterMark = 64
        let channel = try ZMQChannel(context: context, configuration: .init(kind: .pull, options: options,
                                                                            bind: ["tcp://127.0.0.1:0"], inboxCapacity: 16))
        let service = IngestService(channel: channel, store: pullStore, format: .taobao, scoring: pullScoring,
                                    metrics: AgentMetrics(), counts: IngestCounts(), logger: logger)
        let ingesting = Task { try await service.run() }
        let sender = try ZMQChannel(context: context, configuration: .init(kind: .push, connect: channel.boundEndpoints))
        let pullStarted = ContinuousClock.now
        for start in stride(from: 0, to: rows.count, by: batch) {
            let chunk = rows[start..<min(start + batch, rows.count)].joined(separator: "\n")
            try await sender.send([IngestStreamHeader(stream: "bench", offset: Int64(start)).frame, Array(chunk.utf8)])
        }
        let pullSeconds = try await scored(pullScoring, since: pullStarted)
        sender.close()
        channel.close()
        ingesting.cancel()
        _ = try? await ingesting.value
        pullScoring.stop()
        guard try pullStore.eventCount() == events.count else {
            throw ValidationError("the PULL path stored \(try pullStore.eventCount()) of \(events.count) events")
        }
        note(String(format: "PULL socket: %.2f s", pullSeconds))

        /// Seconds from the first batch stored to the last event scored, and before it (joining the group).
        var kafka: (produce: Double, seconds: Double, join: Double)?
        if kafkaMock {
            let cluster = try KafkaMockCluster(brokers: 1)
            try cluster.createTopic("behaviour", partitions: partitions)
            let produceStarted = ContinuousClock.now
            do {
                let producer = try KafkaProducer(properties: ["bootstrap.servers": cluster.bootstrapServers, "log_level": "3",
                                                              "linger.ms": "5"])
                for (event, row) in zip(events, rows) {
                    try producer.send(topic: "behaviour", key: Array(String(event.user).utf8), value: Array(row.utf8))
                }
                try producer.flush()
            }
            let produced = (ContinuousClock.now - produceStarted).inSeconds
            note(String(format: "produced to the mock cluster in %.2f s (not in the figure)", produced))
            let (kafkaStore, kafkaScoring) = try fresh("kafka")
            let properties = ["bootstrap.servers": cluster.bootstrapServers, "group.id": "bench", "auto.offset.reset": "earliest",
                              "log_level": "3"]
            let started = ContinuousClock.now
            let firstBatch = Mutex<ContinuousClock.Instant?>(nil)
            let ingest = KafkaIngest(settings: .init(properties: properties, topic: "behaviour", format: .taobao, batch: batch),
                                     store: kafkaStore, scoring: kafkaScoring, logger: logger) { _ in
                firstBatch.withLock { $0 = $0 ?? .now }
            }
            let seconds = try await scored(kafkaScoring, since: started)
            let joined = (firstBatch.withLock { $0 } ?? started) - started
            // Checked before leaving the group: a shard that leaves hands its shoppers over (deletes them).
            let stored = try kafkaStore.eventCount()
            ingest.stop()
            try await ingest.finish()
            kafkaScoring.stop()
            guard stored == events.count else {
                throw ValidationError("the Kafka path stored \(stored) of \(events.count) events")
            }
            kafka = (produced, seconds - joined.inSeconds, joined.inSeconds)
            note(String(format: "Kafka: %.2f s, of which %.2f s joining the group (until the first batch was stored)",
                        seconds, joined.inSeconds))
        }

        let pullRate = Double(events.count) / pullSeconds
        if json {
            var fields = [#""events": \#(events.count)"#, #""batch": \#(batch)"#,
                          String(format: #""pull_events_per_second": %.0f"#, pullRate)]
            if let kafka {
                fields.append(String(format: #""kafka_mock_events_per_second": %.0f"#, Double(events.count) / kafka.seconds))
                fields.append(String(format: #""kafka_mock_over_pull": %.3f"#, Double(events.count) / kafka.seconds / pullRate))
                fields.append(#""partitions": \#(partitions)"#)
                fields.append(String(format: #""kafka_mock_join_seconds": %.2f"#, kafka.join))
            }
            print("{" + fields.joined(separator: ", ") + "}")
        } else {
            print(String(format: "%d events, %d rows per message or batch, stored durably and scored:", events.count, batch))
            print(String(format: "  PULL socket (loopback, stream header)   %9.0f events/s", pullRate))
            if let kafka {
                let rate = Double(events.count) / kafka.seconds
                print(String(format: "  Kafka (mock cluster, %d partitions)     %9.0f events/s   (%.2f× PULL; after %.1f s joining the group)",
                             partitions, rate, rate / pullRate, kafka.join))
            }
        }
    }
}
