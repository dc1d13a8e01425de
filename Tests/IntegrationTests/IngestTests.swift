@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import TestSupport
import Testing

/// The agent's own doors — live ingest (PULL), alerts (PUB), recommendation queries (ROUTER) — against
/// real `edge-agent` processes: each admits only the client keys enrolled for it (CURVE + ZAP, one
/// domain per socket); a keyless client, a client with an unenrolled key and a client enrolled on
/// another socket are refused, and nothing they send is stored.
@Suite("The agent's sockets admit only their enrolled clients", .serialized, .timeLimit(.minutes(3)))
struct IngestTests {
    /// A federation with region-1's three doors, and keys for an enrolled producer, consumer and query
    /// client, plus an intruder nobody enrolled.
    static func federation() async throws -> (Federation, port: Int, keys: [String: NodeIdentity]) {
        let federation = try await Federation(agents: [(id: "region-1", users: 10)], enrolled: ["region-1"],
                                              aggregatorSettings: "")
        var keys: [String: NodeIdentity] = [:]
        for name in ["shop", "crm", "site", "intruder"] {
            let identity = NodeIdentity()
            try KeyDirectory(path: federation.path("keys/\(name)")).write(identity)
            keys[name] = identity
        }
        let port = federation.port + 5
        try federation.appendLines("""
            ingest: tcp://127.0.0.1:\(port)
            ingest_format: jsonl
            alerts: {publish: "tcp://127.0.0.1:\(port + 1)", recommend: "tcp://127.0.0.1:\(port + 2)", cold_start_threshold: -1000}
            clients:
              producers: [{id: shop, public_key_file: keys/shop/identity.public}]
              alert_consumers: [{id: crm, public_key_file: keys/crm/identity.public}]
              query_clients: [{id: site, public_key_file: keys/site/identity.public}]

            """, to: "region-1.yaml")
        return (federation, port, keys)
    }

    static func rows(users: Range<Int>, events: Int) -> [String] {
        users.flatMap { user in
            (0..<events).map { step in
                #"{"user_id": \#(900_000 + user), "item_id": \#(step), "category_id": \#(1_000 + (step * 7 + user) % 5 * 7_919), "behavior_type": "pv", "timestamp": \#(1_511_600_000 + user * 10 + step * 60)}"#
            }
        }
    }

    @Test("Ingest: an enrolled producer's events are stored durably (bad rows refused and reported); keyless, unenrolled and other sockets' clients are refused and store nothing")
    func pushedEventsAreStored() async throws {
        let (federation, port, keys) = try await Self.federation()
        let endpoint = "tcp://127.0.0.1:\(port)"
        let before = try EventStore(path: federation.path("data/region-1/events.sqlite")).eventCount()
        // No aggregator is running: the agent keeps ingesting while it retries the connection.
        let agent = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        defer { agent.terminate() }
        #expect(await agent.waitForOutput("Live ingest listening", seconds: 30), "\(agent.output)")
        let server = try KeyDirectory(path: federation.path("keys/region-1")).readPublicIdentity().box
        let context = try ZMQContext()

        // Refused: an unenrolled key, a key enrolled on another socket, and no key at all.
        for name in ["intruder", "crm"] {
            await #expect(throws: DoorClient.Failure.self, "\(name)") {
                _ = try await DoorClient.connect(.push, to: endpoint, keys: keys[name], serverKey: server, context: context)
            }
        }
        await #expect(throws: DoorClient.Failure.self) {
            _ = try await DoorClient.connect(.push, to: endpoint, keys: nil, serverKey: nil, context: context)
        }
        // A raw keyless PUSH that does not wait for anything: its rows must not arrive either.
        let raw = try ZMQChannel(context: context, configuration: .init(kind: .push, connect: [endpoint]))
        try await raw.send([Array(Self.rows(users: 100..<110, events: 3).joined(separator: "\n").utf8)])

        let push = try await DoorClient.connect(.push, to: endpoint, keys: keys["shop"], serverKey: server, context: context)
        defer { push.close() }
        let rows = Self.rows(users: 0..<5, events: 10)
        try await push.send([Array((rows[0..<25].joined(separator: "\n")).utf8)])
        try await push.send([Array((rows[25...].joined(separator: "\n") + "\nnot json at all").utf8)])

        let store = try EventStore(path: federation.path("data/region-1/events.sqlite"))
        var count = before
        for _ in 0..<100 where count < before + 50 {
            try await Task.sleep(for: .milliseconds(100))
            count = try store.eventCount()
        }
        #expect(count == before + 50)
        #expect(await agent.waitForOutput("Refused live event", seconds: 10), "\(agent.output)")
        // A flood of 20,000 bad rows in one message: all counted, a handful of log lines.
        try await push.send([Array(String(repeating: "garbage row\n", count: 20_000).utf8)])
        try await Task.sleep(for: .seconds(1))
        #expect(try store.eventCount() == before + 50, "nothing from the refused clients")
        raw.close()
        #expect(agent.output.contains("Refused a client without an enrolled key"), "\(agent.output)")
        agent.terminate()
        #expect(await agent.waitForExit(seconds: 20) == 0, "graceful shutdown: \(agent.output)")
        #expect(agent.output.contains("events.stored=50"), "\(agent.output)")
        #expect(agent.output.contains("events.refused=20001"), "every bad row counted: \(agent.output.suffix(2_000))")
        let lines = agent.output.components(separatedBy: "Refused live event").count - 1
        #expect(lines >= 1 && lines <= 5, "rate-limited: \(lines) lines for 20,001 bad rows")
    }

    @Test("Alerts and recommendations: the enrolled consumer receives the alerts and an unenrolled one nothing; only the enrolled query client is answered")
    func alertsAndQueries() async throws {
        let (federation, port, keys) = try await Self.federation()
        // A model to score with, as the agent keeps it from its last round: scoring starts without an aggregator.
        let shape = try #require(LSTMShape.preset(named: "small"))
        try ModelFile.write(LSTMParameters<Float>(shape: shape, seed: 1), modelVersion: 1,
                            to: federation.path("data/region-1/model.fdlm"))
        let agent = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        defer { agent.terminate() }
        #expect(await agent.waitForOutput("Recommendations served", seconds: 30), "\(agent.output)")
        let server = try KeyDirectory(path: federation.path("keys/region-1")).readPublicIdentity().box
        let context = try ZMQContext()
        let alerts = "tcp://127.0.0.1:\(port + 1)"
        let consumer = try await DoorClient.connect(.sub, to: alerts, keys: keys["crm"], serverKey: server, context: context,
                                                    subscriptions: [Array("alert.".utf8)])
        defer { consumer.close() }
        for name in ["intruder", "shop"] {
            await #expect(throws: DoorClient.Failure.self, "\(name)") {
                _ = try await DoorClient.connect(.sub, to: alerts, keys: keys[name], serverKey: server, context: context,
                                                 subscriptions: [Array("alert.".utf8)])
            }
        }
        // A raw keyless subscriber that does not wait: it must receive nothing.
        let eavesdropper = try ZMQChannel(context: context, configuration: .init(kind: .sub, connect: [alerts],
                                                                                 subscriptions: [Array("alert.".utf8)]))
        defer { eavesdropper.close() }
        try await Task.sleep(for: .milliseconds(300))  // subscriptions reach the PUB

        let push = try await DoorClient.connect(.push, to: "tcp://127.0.0.1:\(port)", keys: keys["shop"], serverKey: server,
                                                context: context)
        defer { push.close() }
        try await push.send([Array(Self.rows(users: 0..<20, events: 30).joined(separator: "\n").utf8)])
        let first = try await consumer.receive(timeout: .seconds(30))
        let topic = first.map { String(decoding: $0.frames.first ?? [], as: UTF8.self) } ?? ""
        #expect(topic.hasPrefix("alert.region-1."), "the enrolled consumer receives alerts: \(agent.output)")
        #expect(try await eavesdropper.receive(timeout: .seconds(2)) == nil, "the keyless subscriber receives nothing")

        // Recommendations: the enrolled query client through the CLI; an unenrolled key is refused.
        let query = try federation.start("edge-agent", ["recommend", "--config", "region-1.yaml", "--user", "900003",
                                                         "--n", "3", "--key", "keys/site"])
        #expect(await query.waitForExit(seconds: 30) == 0, "\(query.output)")
        #expect(query.output.contains("recommendations"), "\(query.output)")
        let intruder = try federation.start("edge-agent", ["recommend", "--config", "region-1.yaml", "--user", "900003",
                                                            "--key", "keys/intruder"])
        #expect(await intruder.waitForExit(seconds: 30) != 0)
        #expect(intruder.output.contains("refused this client's key"), "\(intruder.output)")
        let keyless = try federation.start("edge-agent", ["recommend", "--config", "region-1.yaml", "--user", "900003"])
        #expect(await keyless.waitForExit(seconds: 30) != 0)
        #expect(keyless.output.contains("admits only enrolled clients"), "\(keyless.output)")
    }
}
