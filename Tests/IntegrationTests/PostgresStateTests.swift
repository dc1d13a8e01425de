@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
import Foundation
import Logging
import TestSupport
import Testing

extension ScaleOutTests {
    /// The highly available aggregator's shared state against a real PostgreSQL on loopback: the lease, the fencing
    /// token that stops a paused old leader from writing, and the round log that takes each round once.
    @Suite("PostgreSQL state: lease, fencing, round log", .serialized, .timeLimit(.minutes(5)))
    struct PostgresStateTests {
        static let logger = Logger(label: "test")

        static func configuration(_ server: PostgresServer, node: String, lease: Double) -> PostgresConfiguration {
            var configuration = PostgresConfiguration(host: "127.0.0.1", port: server.port, user: server.user)
            configuration.database = server.database
            configuration.passwordFile = server.passwordFile.path
            configuration.leaseSeconds = lease
            configuration.node = node
            return configuration
        }

        static func checkpoint(round: UInt64, seed: UInt64) -> AggregatorCheckpoint {
            let parameters = LSTMParameters<Float>(shape: LSTMShape(categories: 12, embedding: 4, hidden: 8), seed: seed)
            return AggregatorCheckpoint(
                round: round, modelVersion: round, parameters: parameters, optimizerState: [Double(round), -0.5],
                agents: ["region-1": .init(lastRound: round, acceptedUpdates: Int(round), rejectedUpdates: 1,
                                           ledgerSequence: Int64(round) * 3, ledgerHead: "head-\(round)")],
                clipNorm: 0.75, thresholds: AlertThresholds(interestShift: 2.5, churnRisk: 4.5))
        }

        static func save(_ store: PostgresStateStore, round: UInt64, seed: UInt64) async throws(PostgresStateError) {
            let checkpoint = checkpoint(round: round, seed: seed)
            try await store.save(checkpoint, encodedModel: ModelFile.encode(checkpoint.parameters, modelVersion: round))
        }

        @Test("A leader whose lease ran out and was taken over cannot write any more (fencing); the new leader continues from the last commit; a round is committed once and a checkpoint never goes back")
        func fencing() async throws {
            let server = try await PostgresServer.start(port: TestPorts.block())
            defer { server.stop() }
            let a = try await PostgresStateStore.connect(Self.configuration(server, node: "a", lease: 1), logger: Self.logger)
            let b = try await PostgresStateStore.connect(Self.configuration(server, node: "b", lease: 1), logger: Self.logger)
            let first = try #require(try await a.tryAcquire())
            #expect(try await b.tryAcquire() == nil, "the lease is held: the standby waits")
            #expect(try await a.load() == nil, "a new federation has no checkpoint")
            try await Self.save(a, round: 0, seed: 1)
            // Control: the leader with the current token writes.
            try await Self.save(a, round: 1, seed: 2)
            #expect(try await b.load() == Self.checkpoint(round: 1, seed: 2), "what b reads is exactly what a committed")

            // a is "paused": it does not renew. After its lease ran out, b takes over with a new token.
            try await Task.sleep(for: .milliseconds(1_300))
            let second = try #require(try await b.tryAcquire())
            #expect(second == first + 1)
            let refused = await #expect(throws: PostgresStateError.self, "the paused leader's write is refused") {
                try await Self.save(a, round: 2, seed: 3)
            }
            #expect("\(refused.map { "\($0)" } ?? "")".contains("b holds the lease now (token \(second))"), "\(String(describing: refused))")
            await #expect(throws: PostgresStateError.self, "its renewal too") { try await a.renew() }
            #expect(try await b.load() == Self.checkpoint(round: 1, seed: 2), "nothing of a's write is in the state")

            try await Self.save(b, round: 2, seed: 4)
            await #expect(throws: PostgresStateError.self, "round 2 is not committed twice") {
                try await Self.save(b, round: 2, seed: 5)
            }
            await #expect(throws: PostgresStateError.self, "a checkpoint never goes back") {
                try await Self.save(b, round: 1, seed: 6)
            }
            #expect(try await b.load() == Self.checkpoint(round: 2, seed: 4))
            let log = try await b.roundLog()
            #expect(log.map(\.round) == [1, 2] && log.map(\.holder) == ["a", "b"] && log.map(\.token) == [first, second])
            try await b.renew()
            await a.close()
            await b.close()
        }

        @Test("A crashed leader's session frees the lease at once, long before it would run out; while the session lives, nobody else takes it")
        func crashedLeader() async throws {
            let server = try await PostgresServer.start(port: TestPorts.block())
            defer { server.stop() }
            let a = try await PostgresStateStore.connect(Self.configuration(server, node: "a", lease: 60), logger: Self.logger)
            let b = try await PostgresStateStore.connect(Self.configuration(server, node: "b", lease: 60), logger: Self.logger)
            _ = try #require(try await a.tryAcquire())
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await b.tryAcquire() == nil, "a 60 s lease, its session alive: held")
            #expect(try await b.holder() == LeaseHolder(holder: "a", token: 1, vacant: false))
            await a.close()  // what the kernel does to a SIGKILLed leader's connections
            let started = ContinuousClock.now
            let token = try await b.acquire(poll: .milliseconds(50)) { _ in }
            #expect(token == 2)
            #expect(ContinuousClock.now - started < .seconds(5), "taken within seconds, not after 60")
            await b.release()
            let c = try await PostgresStateStore.connect(Self.configuration(server, node: "c", lease: 60), logger: Self.logger)
            #expect(try await c.tryAcquire() == 3, "a released lease is taken at once")
            await b.close()
            await c.close()
        }

        @Test("Each leader records the enrolment it serves; a leader whose agents differ from the previous one's is told which")
        func enrolment() async throws {
            let server = try await PostgresServer.start(port: TestPorts.block())
            defer { server.stop() }
            let a = try await PostgresStateStore.connect(Self.configuration(server, node: "a", lease: 60), logger: Self.logger)
            _ = try #require(try await a.tryAcquire())
            let one = NodeIdentity().publicIdentity, two = NodeIdentity().publicIdentity, three = NodeIdentity().publicIdentity
            let first = try await a.recordEnrolment(["region-1": one, "region-2": two])
            #expect(first.added.isEmpty && first.removed.isEmpty && first.changed.isEmpty)
            let same = try await a.recordEnrolment(["region-1": one, "region-2": two])
            #expect(same.added.isEmpty && same.removed.isEmpty && same.changed.isEmpty)
            let other = try await a.recordEnrolment(["region-1": three, "region-3": two])
            #expect(other.added == ["region-3"] && other.removed == ["region-2"] && other.changed == ["region-1"])
            await a.close()
        }

        @Test("postgres: settings are checked: unknown keys, lease bounds, unreadable password file; TLS off loopback unless explicitly plaintext")
        func configurationChecks() throws {
            func parse(_ yaml: String) throws -> PostgresConfiguration {
                let file = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-pg-\(UUID()).yaml")
                try yaml.write(to: file, atomically: true, encoding: .utf8)
                defer { try? FileManager.default.removeItem(at: file) }
                return try ConfigurationFile.load(PostgresConfiguration.self, from: file.path)
            }
            #expect(throws: (any Error).self) { try parse("{host: db, user: u, lease: 5}") }
            #expect(throws: ConfigError.self) { try parse("{host: db, user: u, lease_seconds: 0.5}").validate() }
            #expect(throws: ConfigError.self) { try parse("{host: db, user: u, password_file: /nonexistent/pw}").validate() }
            #expect(try parse("{host: db.internal, user: u}").usesTLS)
            #expect(try !parse("{host: db.internal, user: u, insecure_plaintext: true}").usesTLS)
            #expect(try !parse("{host: 127.0.0.1, user: u}").usesTLS)
            #expect(try parse("{host: 127.0.0.1, user: u, ca_file: ca.pem}").usesTLS)
        }
    }
}
