import FedModel
import Foundation

/// Input formats for behaviour events.
package enum EventFormat: String, Sendable, CaseIterable {
    /// Taobao UserBehavior CSV: `user_id,item_id,category_id,behavior_type,timestamp`, no header.
    case taobao
    /// One JSON object per line with the keys `user_id`, `item_id`, `category_id`, `behavior_type`,
    /// `timestamp` (numbers or numeric strings for ids; `behavior_type` as in ``BehaviorEvent/Action``).
    case jsonl
}

/// Why one input row was refused. The row is skipped and counted; the rest of the input goes on.
package struct EventParseError: Error, Equatable, CustomStringConvertible, Sendable {
    package var line: Int
    package var reason: String
    package var description: String { "line \(line): \(reason)" }
}

extension BehaviorEvent {
    /// The event as one Taobao UserBehavior CSV row (no newline): what ``EventParser`` reads back with `.taobao`.
    package var taobaoRow: String { "\(user),\(item),\(category),\(action.code),\(timestamp)" }
}

package enum EventParser {
    /// The earliest and latest timestamps accepted (2000-01-01 to 2100-01-01): a wider value is a
    /// unit error (milliseconds) or garbage.
    static let plausibleTime: ClosedRange<Int64> = 946_684_800...4_102_444_800

    /// Parses one row of `format`. `line` is used only for the error.
    package static func parse(_ row: Substring, format: EventFormat, line: Int) throws(EventParseError) -> BehaviorEvent {
        switch format {
        case .taobao: try parseTaobao(row, line: line)
        case .jsonl: try parseJSON(row, line: line)
        }
    }

    static func parseTaobao(_ row: Substring, line: Int) throws(EventParseError) -> BehaviorEvent {
        let trimmed = row.hasSuffix("\r") ? row.dropLast() : row
        let fields = trimmed.split(separator: ",", omittingEmptySubsequences: false)
        guard fields.count == 5 else {
            throw EventParseError(line: line, reason: "expected 5 comma-separated fields, found \(fields.count)")
        }
        return try validated(user: fields[0], item: fields[1], category: fields[2], action: fields[3],
                             timestamp: fields[4], line: line)
    }

    static func parseJSON(_ row: Substring, line: Int) throws(EventParseError) -> BehaviorEvent {
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: Data(row.utf8)) as? [String: Any] else {
                throw EventParseError(line: line, reason: "not a JSON object")
            }
            object = parsed
        } catch let error as EventParseError {
            throw error
        } catch {
            throw EventParseError(line: line, reason: "invalid JSON")
        }
        func text(_ key: String) throws(EventParseError) -> Substring {
            switch object[key] {
            case let string as String: return Substring(string)
            case let number as NSNumber: return Substring(number.stringValue)
            case nil: throw EventParseError(line: line, reason: "missing '\(key)'")
            default: throw EventParseError(line: line, reason: "'\(key)' must be a number or a string")
            }
        }
        return try validated(user: text("user_id"), item: text("item_id"), category: text("category_id"),
                             action: text("behavior_type"), timestamp: text("timestamp"), line: line)
    }

    private static func validated(user: Substring, item: Substring, category: Substring, action: Substring,
                                  timestamp: Substring, line: Int) throws(EventParseError) -> BehaviorEvent {
        func id(_ text: Substring, _ name: String) throws(EventParseError) -> UInt64 {
            guard let value = UInt64(text) else {
                // Refusals are logged as warnings: never echo what may be (part of) a shopper's id.
                let shown = name == "user_id" ? "" : " '\(text.prefix(32))'"
                throw EventParseError(line: line, reason: "\(name)\(shown) is not a non-negative integer")
            }
            return value
        }
        guard let kind = BehaviorEvent.Action(code: action) else {
            throw EventParseError(line: line, reason: "behavior_type '\(action.prefix(16))' is not pv, cart, fav or buy")
        }
        guard let time = Int64(timestamp) ?? Double(timestamp).flatMap({ $0.isFinite ? Int64(exactly: $0.rounded()) : nil })
        else {
            throw EventParseError(line: line, reason: "timestamp '\(timestamp.prefix(32))' is not a number")
        }
        guard plausibleTime.contains(time) else {
            throw EventParseError(line: line, reason: "timestamp \(time) is outside 2000–2100 (seconds expected)")
        }
        return BehaviorEvent(user: try id(user, "user_id"), item: try id(item, "item_id"),
                             category: try id(category, "category_id"), action: kind, timestamp: time)
    }
}
