@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

@Suite("Event parsing")
struct EventParsingTests {
    private func temporaryFile(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("events-\(UUID()).txt").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("Taobao rows parse into events; every action code maps")
    func taobaoRow() throws {
        let event = try EventParser.parse("1,2268318,2520377,pv,1511544070", format: .taobao, line: 1)
        #expect(event == BehaviorEvent(user: 1, item: 2_268_318, category: 2_520_377, action: .view, timestamp: 1_511_544_070))
        for (code, action) in [("cart", BehaviorEvent.Action.cart), ("fav", .favourite), ("buy", .purchase)] {
            #expect(try EventParser.parse("1,2,3,\(code),1511544070\r", format: .taobao, line: 1).action == action)
        }
    }

    @Test("JSON lines accept numbers or numeric strings and the same action codes")
    func jsonRow() throws {
        let row = #"{"user_id": 7, "item_id": "42", "category_id": 9, "behavior_type": "buy", "timestamp": 1511544070}"#
        #expect(try EventParser.parse(Substring(row), format: .jsonl, line: 3)
                == BehaviorEvent(user: 7, item: 42, category: 9, action: .purchase, timestamp: 1_511_544_070))
    }

    @Test("Bad rows are refused with their line number and a reason", arguments: [
        ("1,2,3,pv", "expected 5 comma-separated fields, found 4"),
        ("1,2,3,click,1511544070", "behavior_type 'click' is not pv, cart, fav or buy"),
        ("-1,2,3,pv,1511544070", "user_id is not a non-negative integer"),
        ("1,2,3,pv,1511544070000", "timestamp 1511544070000 is outside 2000–2100 (seconds expected)"),
    ])
    func badTaobaoRows(row: String, reason: String) {
        #expect(throws: EventParseError(line: 12, reason: reason)) {
            try EventParser.parse(Substring(row), format: .taobao, line: 12)
        }
    }

    @Test("A file with some bad rows yields the good ones and reports the bad ones by line")
    func mixedFile() throws {
        let path = try temporaryFile("1,2,3,pv,1511544070\nbroken\n\n4,5,6,buy,1511544071\n7,8,9,zzz,1511544072")
        var events: [BehaviorEvent] = []
        let summary = try EventFileReader(path: path, format: .taobao).read { events += $0 }
        #expect(events.map(\.user) == [1, 4])
        #expect(summary.accepted == 2 && summary.rejected == 2)
        #expect(summary.errors.map(\.line) == [2, 5])
    }

    @Test("A file of only bad rows is an error that names the format, not a silent zero")
    func onlyBadRows() throws {
        let path = try temporaryFile(#"{"user_id": 1}"# + "\nnot an event\n")
        #expect(throws: EventFileReader.ReadError.self) { try EventFileReader(path: path, format: .taobao).read { _ in } }
        let error = #expect(throws: EventFileReader.ReadError.self) {
            try EventFileReader(path: path, format: .jsonl).read { _ in }
        }
        #expect(error?.description.contains("check --format") == true)
    }

    @Test("The real Taobao excerpts parse completely with their documented statistics",
          .enabled(if: SharedData.exists("data/taobao-userbehavior/ub_head_users.csv"),
                   SharedData.absentMessage("data/taobao-userbehavior/ub_head_users.csv")))
    func realTaobao() throws {
        var events: [BehaviorEvent] = []
        var progressCalls = 0
        let head = try EventFileReader(path: SharedData.url("data/taobao-userbehavior/ub_head_users.csv").path,
                                       format: .taobao).read(progress: { _, _ in progressCalls += 1 }) { events += $0 }
        #expect(head.accepted == 4_321 && head.rejected == 0 && progressCalls >= 1)
        #expect(Set(events.map(\.user)).count == 43)
        #expect(Set(events.map(\.item)).count == 3_276)
        #expect(Set(events.map(\.category)).count == 567)
        let actions = Dictionary(grouping: events, by: \.action).mapValues(\.count)
        #expect(actions == [.view: 3_926, .cart: 190, .favourite: 128, .purchase: 77])
        // This file's last row has no trailing newline; it must still be read.
        let slice = try EventFileReader(path: SharedData.url("data/taobao-userbehavior/ub_timeslice_b.csv").path,
                                        format: .taobao).read { _ in }
        #expect(slice.accepted == 2_722 && slice.rejected == 0)
    }
}
