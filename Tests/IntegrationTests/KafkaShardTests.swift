@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
import Foundation
import TestSupport
import Testing

/// Two real `edge-agent` processes as shards of one region, consuming a topic of librdkafka's mock cluster
/// (hosted by this test process, on loopback) as one consumer group: one is killed between storing a batch and
/// committing its offsets, restarted, and joined by the second; every event ends up stored exactly once, each
/// shopper in exactly one shard.
@Suite("Sharded agents on Kafka (real processes, librdkafka's mock cluster)", .serialized, .timeLimit(.minutes(4)))
struct KafkaShardTests {
    static let firstUser: UInt64 = 7_000_000

    /// Taobao rows of `users` shoppers, `events` each, with ids from ``firstUser`` (apart from the imported ones).
    static func events(users: Range<Int>, events: Int) -> [BehaviorEvent] {
        users.flatMap { user in
            (0..<events).map { step in
                BehaviorEvent(user: firstUser + UInt64(user), item: UInt64(step * 13 + user), category: UInt64(1_000 + (step + user) % 7),
                              action: step % 9 == 0 ? .cart : .view, timestamp: 1_511_600_000 + Int64(user * 10 + step * 60))
            }
        }
    }

    static func produce(_ events: [BehaviorEvent], to cluster: KafkaMockCluster) throws {
        let producer = try KafkaProducer(properties: ["bootstrap.servers": cluster.bootstrapServers, "log_level": "3"])
        for event in events {
            try producer.send(topic: "behaviour", key: Array(String(event.user).utf8), value: Array(event.taobaoRow.utf8))
        }
        try producer.flush()
    }

    /// The Kafka-fed events a shard's store holds (the imported ones have smaller shopper ids).
    static func kafkaRows(_ federation: Federation, _ shard: String) throws -> [String] {
        let store = try EventStore(path: federation.path("data/\(shard)/events.sqlite"))
        var rows: [String] = []
        try store.forEachRecentSequence(limit: 1 << 30) { user, events in
            guard user >= firstUser else { return }
            rows += events.map { "\($0.user),\($0.item),\($0.timestamp)" }
        }
        return rows
    }

    static func waitFor(seconds: Double, _ condition: () throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if (try? condition()) == true { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return try condition()
    }

    @Test("Killed between storing and committing, restarted, then joined by a second shard: every event stored once, each shopper in one shard")
    func killRestartRebalance() async throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic("behaviour", partitions: 4)
        let shards = ["shard-a", "shard-b"]
        let federation = try await Federation(agents: shards.map { (id: $0, users: 5) }, enrolled: shards, aggregatorSettings: "")
        let shape = try #require(LSTMShape.preset(named: "small"))
        for shard in shards {
            try ModelFile.write(LSTMParameters<Float>(shape: shape, seed: 1), modelVersion: 1,
                                to: federation.path("data/\(shard)/model.fdlm"))
            try federation.appendLines("""
                kafka: {brokers: "\(cluster.bootstrapServers)", topic: behaviour, group: region-1, format: taobao, batch: 100,
                        properties: {session.timeout.ms: "6000", heartbeat.interval.ms: "500"}}

                """, to: "\(shard).yaml")
        }
        let first = Self.events(users: 0..<60, events: 20), second = Self.events(users: 0..<60, events: 10).map {
            var later = $0
            later.timestamp += 86_400
            return later
        }
        try Self.produce(first, to: cluster)

        // 1. Killed after its second batch is durable, before that batch's offsets are committed.
        let crashing = try federation.start("edge-agent", ["run", "--config", "shard-a.yaml"],
                                            environment: [Failpoint.environmentVariable: "agent.kafka.stored=2"])
        #expect(await crashing.waitForFailpoint("agent.kafka.stored", seconds: 60), "\(crashing.output)")
        let afterCrash = try Self.kafkaRows(federation, "shard-a").count  // stored, some maybe not scored: history next
        #expect(afterCrash >= 200 && afterCrash < first.count, "two batches of 100 stored, not all: \(afterCrash)")

        // 2. Restarted: Kafka re-delivers the uncommitted batch; the store skips it.
        let a = try federation.start("edge-agent", ["run", "--config", "shard-a.yaml"])
        defer { a.terminate() }
        #expect(try await Self.waitFor(seconds: 60) { try Self.kafkaRows(federation, "shard-a").count >= first.count },
                "\(a.output)")

        // 3. A second shard joins; the group moves some partitions (and their shoppers) to it.
        let b = try federation.start("edge-agent", ["run", "--config", "shard-b.yaml"])
        defer { b.terminate() }
        #expect(await b.waitForOutput("Kafka partitions assigned", seconds: 60), "\(b.output)")
        #expect(await a.waitForOutput("Kafka partitions revoked", seconds: 60), "\(a.output)")
        try Self.produce(second, to: cluster)
        let expected = (first + second).map { "\($0.user),\($0.item),\($0.timestamp)" }.sorted()
        #expect(try await Self.waitFor(seconds: 90) {
            try (Self.kafkaRows(federation, "shard-a") + Self.kafkaRows(federation, "shard-b")).count == expected.count
        }, "\(a.output)\n\(b.output)")
        try await Task.sleep(for: .milliseconds(500))  // nothing more arrives
        let (aRows, bRows) = (try Self.kafkaRows(federation, "shard-a"), try Self.kafkaRows(federation, "shard-b"))
        #expect((aRows + bRows).sorted() == expected, "every event stored exactly once across the shards")
        let users = { (rows: [String]) in Set(rows.map { $0.split(separator: ",")[0] }) }
        #expect(!users(aRows).isEmpty && !users(bRows).isEmpty, "both shards hold shoppers")
        #expect(users(aRows).isDisjoint(with: users(bRows)), "a shopper lives in exactly one shard")

        // Scored once: the crashed shard's stored events came back as history at restart (no alert), the moved
        // partitions' committed events as history in the new shard; everything else was scored live, once,
        // by exactly one of the two running shards.
        var scored: [String: Int] = [:]
        for _ in 0..<100 {
            for shard in shards {
                let query = try federation.start("edge-agent", ["status", "--config", "\(shard).yaml", "--json"])
                _ = await query.waitForExit(seconds: 20)
                let output = query.output
                let json = output.firstIndex(of: "{").flatMap { start in output.lastIndex(of: "}").map { output[start...$0] } }
                let object = json.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                scored[shard] = object?["events_scored"] as? Int
            }
            if scored.values.reduce(0, +) >= expected.count - afterCrash { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(scored.values.reduce(0, +) == expected.count - afterCrash,
                "live-scored \(scored) of \(expected.count) events, \(afterCrash) stored before the crash")

        // Stopped gracefully, each commits and leaves the group; the restarted shard logged the skipped rows.
        a.terminate()
        b.terminate()
        #expect(await a.waitForExit(seconds: 30) == 0, "\(a.output)")
        #expect(await b.waitForExit(seconds: 30) == 0, "\(b.output)")
        #expect(a.output.contains("Kafka ingest stopped"), "\(a.output)")
    }

    @Test("A Kafka section that would send raw behaviour in clear to another host, or set what the agent owns, is refused at start")
    func unsafeConfigurationsAreRefused() async throws {
        let federation = try await Federation(agents: [(id: "shard-a", users: 3)], enrolled: ["shard-a"], aggregatorSettings: "")
        let base = try String(contentsOfFile: federation.path("shard-a.yaml"), encoding: .utf8)
        let cases: [(String, String)] = [
            ("kafka: {brokers: \"kafka.example.com:9092\", topic: behaviour, group: g}", "security.protocol"),
            ("kafka: {brokers: \"127.0.0.1:9092\", topic: behaviour, group: g, properties: {enable.auto.commit: \"true\"}}",
             "kafka.properties.enable.auto.commit"),
            ("kafka: {brokers: \"127.0.0.1:9092\", topic: \"bad topic\", group: g}", "kafka.topic"),
            ("kafka: {brokers: \"127.0.0.1\", topic: behaviour, group: g}", "kafka.brokers"),
        ]
        for (line, key) in cases {
            try (base + line + "\n").write(toFile: federation.path("shard-a.yaml"), atomically: true, encoding: .utf8)
            let check = try federation.start("edge-agent", ["check-config", "--config", "shard-a.yaml"])
            #expect(await check.waitForExit(seconds: 30) != 0, "\(line)\n\(check.output)")
            #expect(check.output.contains(key), "\(line)\n\(check.output)")
        }
        // The same remote broker over TLS is accepted.
        try (base + "kafka: {brokers: \"kafka.example.com:9093\", topic: behaviour, group: g, properties: {security.protocol: ssl}}\n")
            .write(toFile: federation.path("shard-a.yaml"), atomically: true, encoding: .utf8)
        let check = try federation.start("edge-agent", ["check-config", "--config", "shard-a.yaml"])
        #expect(await check.waitForExit(seconds: 30) == 0, "\(check.output)")
    }
}
