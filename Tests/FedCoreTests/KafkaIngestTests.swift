@testable import FedIO
import FedLogic
import FedModel
@testable import FedNode
import FedTools
import Foundation
import Logging
import Synchronization
import Testing

/// Kafka ingestion against librdkafka's mock cluster (real brokers speaking the Kafka protocol on loopback, with
/// consumer groups and offset commits): every produced event stored once and scored once across a restart, a
/// lost commit and a rebalance, and a shopper in exactly one shard at the end.
@Suite("Kafka ingestion: sharded agents in a consumer group", .serialized, .timeLimit(.minutes(4)))
struct KafkaIngestTests {
    static let partitions = 4

    /// One shard: its own store and scoring thread (with a model installed, so live events are scored).
    final class Shard: Sendable {
        let directory: URL
        let store: EventStore
        let scoring: LiveScoring
        let ingest: KafkaIngest
        let counts = Counts()

        /// What the shard's batches reported.
        final class Counts: Sendable {
            let value = Mutex((stored: 0, history: 0, refused: 0, alreadyStored: 0))
        }
        var batches: (stored: Int, history: Int, refused: Int, alreadyStored: Int) { counts.value.withLock { $0 } }

        init(directory: URL, cluster: KafkaMockCluster, topic: String, group: String, catalog: CategoryCatalog,
             parameters: LSTMParameters<Float>) throws {
            self.directory = directory
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            store = try EventStore(path: directory.appendingPathComponent("events.sqlite").path)
            var logger = Logger(label: "kafka-test")
            logger.logLevel = .warning
            scoring = LiveScoring(catalog: catalog, settings: DriftEngine.Settings(region: "test"), store: store, logger: logger)
            scoring.install(parameters, modelVersion: 1)
            let properties = ["bootstrap.servers": cluster.bootstrapServers, "group.id": group,
                              "auto.offset.reset": "earliest", "session.timeout.ms": "6000",
                              "heartbeat.interval.ms": "500", "log_level": "3"]
            let counts = self.counts
            ingest = KafkaIngest(settings: .init(properties: properties, topic: topic, format: .taobao, batch: 500),
                                 store: store, scoring: scoring, logger: logger) { outcome in
                counts.value.withLock {
                    $0.stored += outcome.stored
                    $0.history += outcome.history
                    $0.refused += outcome.refused
                    $0.alreadyStored += outcome.alreadyStored
                }
            }
        }

        func stop() async throws {
            ingest.stop()
            try await ingest.finish()
            scoring.stop()
        }

        /// Every stored event, as comparable rows.
        func rows() throws -> [String] {
            var rows: [String] = []
            try store.forEachRecentSequence(limit: 1 << 30) { _, events in rows += events.map(KafkaIngestTests.row) }
            return rows
        }
    }

    static func row(_ event: BehaviorEvent) -> String { event.taobaoRow }

    struct Fixture {
        let cluster: KafkaMockCluster
        let topic = "behaviour"
        let events: [BehaviorEvent]
        let catalog: CategoryCatalog
        let parameters: LSTMParameters<Float>
        let directory: URL

        init(users: Int = 80) throws {
            cluster = try KafkaMockCluster(brokers: 1)
            try cluster.createTopic(topic, partitions: KafkaIngestTests.partitions)
            var simulation = ShopperSimulator.Parameters()
            simulation.users = users
            simulation.days = 3
            events = ShopperSimulator(parameters: simulation).run().events.sorted { $0.timestamp < $1.timestamp }
            var items: [UInt64: Set<UInt64>] = [:]
            CategoryCatalog.itemsPerCategory(events, into: &items)
            catalog = CategoryCatalog(itemsPerCategory: items.mapValues(\.count), categories: 64)
            parameters = LSTMParameters(shape: LSTMShape(categories: 64, embedding: 8, hidden: 16), seed: 3)
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("kafka-\(UUID().uuidString)")
        }

        func shard(_ name: String, group: String = "region-1") throws -> Shard {
            try Shard(directory: directory.appendingPathComponent(name), cluster: cluster, topic: topic, group: group,
                      catalog: catalog, parameters: parameters)
        }

        /// Produces `events` keyed by shopper (the partitioner puts a shopper's events in one partition).
        func produce(_ events: some Sequence<BehaviorEvent>) throws {
            let producer = try KafkaProducer(properties: ["bootstrap.servers": cluster.bootstrapServers, "log_level": "3"])
            for event in events {
                try producer.send(topic: topic, key: Array(String(event.user).utf8), value: Array(KafkaIngestTests.row(event).utf8))
            }
            try producer.flush()
        }
    }

    /// Waits until `condition` holds (or `seconds` pass); returns whether it held.
    static func eventually(seconds: Double = 60, _ condition: () throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if try condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try condition()
    }

    /// Waits until scoring has taken every event it was given.
    static func settled(_ shards: [Shard]) async throws -> Bool {
        try await eventually { shards.allSatisfy { $0.scoring.backlogEvents == 0 && !$0.scoring.progress.replaying } }
    }

    @Test("Stored and scored once across a graceful restart: the shard hands its shoppers over when it leaves and rebuilds them, without alerts, when it returns")
    func restart() async throws {
        let fixture = try Fixture()
        defer { try? FileManager.default.removeItem(at: fixture.directory) }
        let half = fixture.events.count / 2
        try fixture.produce(fixture.events[..<half])
        var first: Shard? = try fixture.shard("a")
        #expect(try await Self.eventually { try first!.store.eventCount() == half })
        #expect(try await Self.settled([first!]))
        #expect(first!.scoring.progress.eventsScored == half, "every event live and scored once")
        try await first!.stop()
        #expect(try first!.store.eventCount() == 0, "leaving the group hands the partitions' shoppers over")
        first = nil

        // Back on the same store and group: the committed half is history, the rest live.
        try fixture.produce(fixture.events[half...])
        let second = try fixture.shard("a")
        let total = fixture.events.count
        #expect(try await Self.eventually { try second.store.eventCount() == total })
        #expect(try await Self.settled([second]))
        #expect(second.batches.history == half, "the committed events rebuilt as history")
        #expect(second.scoring.progress.eventsScored == total - half, "only the new events are scored")
        #expect(try second.rows().sorted() == fixture.events.map(Self.row).sorted(), "every event stored exactly once")
        #expect(second.scoring.progress.users == Set(fixture.events.map(\.user)).count)
        try await second.stop()
    }

    @Test("A second shard joins: partitions move with their shoppers, history is rebuilt without alerts, every event is stored and scored once")
    func rebalance() async throws {
        let fixture = try Fixture()
        defer { try? FileManager.default.removeItem(at: fixture.directory) }
        let half = fixture.events.count / 2
        try fixture.produce(fixture.events[..<half])
        let a = try fixture.shard("a")
        #expect(try await Self.eventually { try a.store.eventCount() == half })
        #expect(try await Self.settled([a]))
        #expect(a.ingest.partitions.count == Self.partitions)

        let b = try fixture.shard("b")
        #expect(try await Self.eventually { !b.ingest.partitions.isEmpty && a.ingest.partitions.count < Self.partitions },
                "the group rebalanced")
        try fixture.produce(fixture.events[half...])
        let total = fixture.events.count
        #expect(try await Self.eventually { try a.store.eventCount() + b.store.eventCount() == total })
        #expect(try await Self.settled([a, b]))
        let (aRows, bRows) = (try a.rows(), try b.rows())
        #expect((aRows + bRows).sorted() == fixture.events.map(Self.row).sorted(), "every event stored once, in one shard")
        let aUsers = Set(aRows.map { $0.split(separator: ",")[0] }), bUsers = Set(bRows.map { $0.split(separator: ",")[0] })
        #expect(aUsers.isDisjoint(with: bUsers), "a shopper lives in exactly one shard")
        #expect(!bUsers.isEmpty && !aUsers.isEmpty)
        #expect(Set(a.ingest.partitions).isDisjoint(with: b.ingest.partitions))
        // Scored once: A scored the first half live; B learned its partitions' first half as history (not scored)
        // and scored its share of the second half live.
        let bHistory = b.batches.history
        let bFirstHalf = fixture.events[..<half].filter { bUsers.contains(Substring(String($0.user))) }.count
        #expect(bHistory == bFirstHalf, "B rebuilt exactly its shoppers' history")
        #expect(a.scoring.progress.eventsScored + b.scoring.progress.eventsScored == total,
                "A \(a.scoring.progress.eventsScored) + B \(b.scoring.progress.eventsScored) scored, \(total) events")
        #expect(b.scoring.progress.eventsScored == bRows.count - bHistory)
        // The handed-over shoppers' state left A: A knows only its own shoppers now.
        #expect(a.scoring.progress.users == aUsers.count, "A still holds state for \(a.scoring.progress.users - aUsers.count) moved shoppers")
        try await b.stop()
        try await a.stop()
    }

    @Test("Records keyed by anything but their shopper's id are refused and counted: a shopper may not span shards")
    func keysMustBeShoppers() async throws {
        let fixture = try Fixture(users: 10)
        defer { try? FileManager.default.removeItem(at: fixture.directory) }
        let producer = try KafkaProducer(properties: ["bootstrap.servers": fixture.cluster.bootstrapServers, "log_level": "3"])
        let sample = Array(fixture.events.prefix(30))
        for (index, event) in sample.enumerated() {
            let key: [UInt8]? = switch index % 3 {
            case 0: Array(String(event.user).utf8)
            case 1: Array(String(event.user + 1).utf8)
            default: nil
            }
            try producer.send(topic: fixture.topic, key: key, value: Array(Self.row(event).utf8), partition: Int32(index % 4))
        }
        try producer.flush()
        let shard = try fixture.shard("a")
        #expect(try await Self.eventually { shard.batches.stored + shard.batches.refused == 30 })
        #expect(try shard.store.eventCount() == 10)
        #expect(shard.batches.refused == 20)
        try await shard.stop()
    }
}
