package import Foundation
package import Logging
import Synchronization

/// How log lines are written: `text` (`2026-12-06T02:48:30.123Z info aggregator: key=value [source]
/// message`, for people) or `json` (one object per line, for log shippers).
package enum LogFormat: String, Sendable, CaseIterable {
    case text, json
}

extension Logger {
    /// A logger for an executable: stderr, at `level`, in `format`, with millisecond UTC timestamps.
    /// Executables bootstrap logging; FedCore never does.
    package static func bootstrapForTool(label: String, level: Logger.Level, format: LogFormat = .text) -> Logger {
        LoggingSystem.bootstrap { label in
            var handler = LineLogHandler(label: label, format: format)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}

/// Writes one line per event to stderr, whole lines only (a lock around each write).
package struct LineLogHandler: LogHandler {
    package var metadata: Logger.Metadata = [:]
    package var logLevel: Logger.Level = .info
    let label: String
    let format: LogFormat
    private static let output = Mutex(())

    package init(label: String, format: LogFormat) {
        (self.label, self.format) = (label, format)
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        let merged = event.metadata.map { metadata.merging($0) { $1 } } ?? metadata
        let text = Self.line(format: format, time: Date(), level: event.level, label: label, message: "\(event.message)",
                             metadata: merged, source: event.source)
        Self.output.withLock { _ in FileHandle.standardError.write(Data((text + "\n").utf8)) }
    }

    /// One event as a line (no newline), in `format`.
    package static func line(format: LogFormat, time: Date, level: Logger.Level, label: String, message: String,
                             metadata: Logger.Metadata, source: String) -> String {
        let stamp = timestamp(time)
        switch format {
        case .text:
            let pairs = metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            return "\(stamp) \(level) \(label):\(pairs.isEmpty ? "" : " " + pairs) [\(source)] \(message)"
        case .json:
            var object: [String: Any] = ["time": stamp, "level": level.rawValue, "label": label, "source": source,
                                         "message": message]
            if !metadata.isEmpty { object["metadata"] = metadata.mapValues(\.jsonValue) }
            guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]),
                  let json = String(data: data, encoding: .utf8) else { return "{\"message\":\"unencodable log event\"}" }
            return json
        }
    }

    /// ISO 8601 in UTC with milliseconds: `2026-12-06T02:48:30.123Z`.
    static func timestamp(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var time = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                      parts.tm_hour, parts.tm_min, parts.tm_sec, Int(milliseconds % 1000))
    }
}

extension Logger.MetadataValue {
    /// Strings, lists and dictionaries as JSON values.
    var jsonValue: Any {
        switch self {
        case .string(let string): string
        case .stringConvertible(let value): "\(value)"
        case .array(let values): values.map(\.jsonValue)
        case .dictionary(let values): values.mapValues(\.jsonValue)
        }
    }
}
