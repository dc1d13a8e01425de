import FedIO
import FedLogic
import FedModel

/// A configuration that cannot be used. Messages name the file, the key and the fix.
package enum ConfigError: Error, Equatable, CustomStringConvertible, Sendable {
    case fileNotFound(path: String)
    case unreadable(path: String, reason: String)
    case invalid(path: String, reason: String)
    case missingKey(path: String, key: String)
    case invalidValue(key: String, value: String, reason: String)
    /// A key no setting has (a misspelling would otherwise leave a setting silently at its default).
    case unknownKey(path: String, key: String, suggestion: String?, line: Int?, allowed: [String])

    package var description: String {
        switch self {
        case let .fileNotFound(path):
            "no configuration file at \(path): start from the examples in configs/ (e.g. configs/aggregator.yaml)"
        case let .unreadable(path, reason): "cannot read configuration \(path): \(reason)"
        case let .invalid(path, reason): "configuration \(path) is not valid YAML for this role: \(reason)"
        case let .missingKey(path, key): "configuration \(path) lacks the required key '\(key)'"
        case let .invalidValue(key, value, reason): "configuration key '\(key)' = '\(value)': \(reason)"
        case let .unknownKey(path, key, suggestion, line, allowed):
            "configuration \(path)\(line.map { ", line \($0)" } ?? ""): unknown key '\(key)'"
                + (suggestion.map { " (did you mean '\($0)'?)" } ?? "")
                + ". Allowed here: \(allowed.sorted().joined(separator: ", ")) (every key: docs/CONFIGURATION.md)"
        }
    }
}
