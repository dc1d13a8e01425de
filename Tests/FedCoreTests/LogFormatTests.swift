@testable import FedNode
import Foundation
import Logging
import Testing

@Suite("Log lines: text for people, JSON for shippers, millisecond UTC timestamps")
struct LogFormatTests {
    static let time = Date(timeIntervalSince1970: 1_765_000_000.1234)

    @Test("Text: timestamp with milliseconds, level, label, sorted key=value pairs, source, message")
    func text() {
        let line = LineLogHandler.line(format: .text, time: Self.time, level: .info, label: "aggregator",
                                       message: "Round open", metadata: ["round.id": "3", "agents.live": "2"],
                                       source: "FedNode")
        #expect(line == "2025-12-06T05:46:40.123Z info aggregator: agents.live=2 round.id=3 [FedNode] Round open")
    }

    @Test("JSON: one object per line with every field; quotes and newlines in messages stay inside the string")
    func json() throws {
        let line = LineLogHandler.line(format: .json, time: Self.time, level: .warning, label: "edge-agent",
                                       message: "refused \"x\"\nnext", metadata: ["reason": "bad", "list": ["a", "b"]],
                                       source: "FedNode")
        #expect(!line.contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["time"] as? String == "2025-12-06T05:46:40.123Z" && object["level"] as? String == "warning")
        #expect(object["message"] as? String == "refused \"x\"\nnext" && object["source"] as? String == "FedNode")
        let metadata = try #require(object["metadata"] as? [String: Any])
        #expect(metadata["reason"] as? String == "bad" && metadata["list"] as? [String] == ["a", "b"])
    }
}
