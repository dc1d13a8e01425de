@testable import FedNode
import Foundation
import Logging
import Testing

@Suite("Log lines: text for people, JSON for shippers, millisecond UTC timestamps")
struct LogFormatTests {
    @Test("A throttled warning: one line per interval, and the next line counts every occurrence left out")
    func throttle() async throws {
        var throttle = LogThrottle(every: .milliseconds(200))
        #expect(throttle.due() == 0, "the first occurrence is logged")
        #expect(throttle.due() == nil && throttle.due(count: 3) == nil, "then nothing within the interval")
        try await Task.sleep(for: .milliseconds(250))
        #expect(throttle.due() == 4, "the next line says how many were left out")
        #expect(throttle.due() == nil)
        try await Task.sleep(for: .milliseconds(250))
        #expect(throttle.due(count: 5) == 1, "five at once: this line is one of them, the other four wait for the next")
        try await Task.sleep(for: .milliseconds(250))
        #expect(throttle.due() == 4)
    }

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
