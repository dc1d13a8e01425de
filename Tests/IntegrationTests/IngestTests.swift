@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import TestSupport
import Testing

@Suite("Live ingest into a real agent", .serialized, .timeLimit(.minutes(2)))
struct IngestTests {
    @Test("Events pushed to the agent's PULL socket are stored durably; bad rows are refused and reported")
    func pushedEventsAreStored() async throws {
        let federation = try await Federation(agents: [(id: "region-1", users: 10)], enrolled: ["region-1"],
                                              aggregatorSettings: "")
        let before = try EventStore(path: federation.path("data/region-1/events.sqlite")).eventCount()
        let port = federation.port + 5
        try federation.appendLines("ingest: tcp://127.0.0.1:\(port)\ningest_format: jsonl\n", to: "region-1.yaml")
        // No aggregator is running: the agent keeps ingesting while it retries the connection.
        let agent = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        defer { agent.terminate() }
        #expect(await agent.waitForOutput("Live ingest listening", seconds: 30), "\(agent.output)")

        let context = try ZMQContext()
        let push = try ZMQChannel(context: context, configuration: .init(kind: .push,
                                                                          connect: ["tcp://127.0.0.1:\(port)"]))
        defer { push.close() }
        let rows = (0..<50).map { index in
            #"{"user_id": \#(900_000 + index % 5), "item_id": \#(index), "category_id": 4242, "behavior_type": "pv", "timestamp": \#(1_511_600_000 + index)}"#
        }
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
        agent.terminate()
        #expect(await agent.waitForExit(seconds: 20) == 0, "graceful shutdown: \(agent.output)")
        #expect(agent.output.contains("events.stored=50"), "\(agent.output)")
    }
}
