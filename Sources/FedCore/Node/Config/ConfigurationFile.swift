package import FedIO
import FedLogic
import Foundation
import Yams

/// Loads a role's YAML configuration. Relative paths inside the file are resolved against the file's
/// directory, so a configuration works from any working directory.
package enum ConfigurationFile {
    /// Reads `path`, applies the environment's overrides (`<environmentPrefix><KEY>[__<KEY>…]`, e.g.
    /// `FEDDRIFT_AGENT_PRIVACY__EPSILON=4`; each value is read as YAML, so `true`, `4` and `[a, b]` work)
    /// and decodes it strictly: an unknown key, a value of the wrong type or a YAML syntax error is an
    /// error that names the key (and the closest known one), the value and the line.
    /// The largest configuration file read (a configuration is a few kilobytes).
    package static let maxFileBytes = 4 << 20

    /// The text of `path`: a regular file (a FIFO or device would hang the reader) of at most
    /// ``maxFileBytes`` bytes, in UTF-8.
    package static func readText(_ path: String) throws(ConfigError) -> String {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { throw .fileNotFound(path: path) }
        guard attributes[.type] as? FileAttributeType == .typeRegular else {
            throw .unreadable(path: path, reason: "not a regular file (a directory, FIFO or device)")
        }
        guard let size = attributes[.size] as? Int, size <= maxFileBytes else {
            throw .unreadable(path: path, reason: "larger than \(maxFileBytes >> 20) MiB: not a configuration file")
        }
        // An empty file is empty text (Foundation's reader leaks a 4 KiB buffer on one; found by scripts/fuzz).
        guard size > 0 else { return "" }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .unreadable(path: path, reason: "cannot be read")
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw .unreadable(path: path, reason: "not UTF-8 text")
        }
        return text
    }

    package static func load<T: Decodable>(_ type: T.Type, from path: String, environmentPrefix: String? = nil,
                                           environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(ConfigError) -> T
    {
        let text = try readText(path)
        var root: Node
        do {
            root = try Yams.compose(yaml: text) ?? Node.mapping(Node.Mapping([]))
        } catch {
            throw .invalid(path: path, reason: "\(error)")
        }
        if let environmentPrefix {
            for (name, value) in environment.sorted(by: { $0.key < $1.key }) where name.hasPrefix(environmentPrefix) {
                let keys = name.dropFirst(environmentPrefix.count).components(separatedBy: "__").map { $0.lowercased() }
                guard !keys.contains(where: \.isEmpty) else {
                    throw .invalidValue(key: name, value: value, reason: "expected \(environmentPrefix)KEY or \(environmentPrefix)KEY__SUBKEY")
                }
                do {
                    let override = try Yams.compose(yaml: value) ?? Node("")
                    try set(override, at: keys, in: &root)
                } catch let error as ConfigError {
                    throw error
                } catch {
                    throw .invalidValue(key: name, value: value, reason: "not a YAML value: \(error)")
                }
            }
        }
        do {
            return try YAMLDecoder().decode(T.self, from: root)
        } catch let error as UnknownKeyError {
            // The key's own line: the mapping that holds it knows where each key node is.
            let line = node(at: Array(error.path.dropLast()), in: root)?.mapping?.keys
                .first { $0.scalar?.string == error.key }?.mark?.line
            throw .unknownKey(path: path, key: error.dottedPath, suggestion: error.suggestion, line: line,
                              allowed: error.known)
        } catch let DecodingError.keyNotFound(key, context) {
            let keyPath = (context.codingPath + [key]).map(\.stringValue).joined(separator: ".")
            throw .missingKey(path: path, key: keyPath)
        } catch let DecodingError.typeMismatch(expected, context) {
            throw mismatch(path: path, expected: Self.describe(expected), context: context, root: root)
        } catch let DecodingError.valueNotFound(expected, context) {
            throw mismatch(path: path, expected: Self.describe(expected), context: context, root: root)
        } catch let DecodingError.dataCorrupted(context) {
            throw mismatch(path: path, expected: nil, context: context, root: root)
        } catch {
            throw .invalid(path: path, reason: "\(error)")
        }
    }

    private static func mismatch(path: String, expected: String?, context: DecodingError.Context, root: Node) -> ConfigError {
        let keys = context.codingPath.map(\.stringValue)
        let found = node(at: keys, in: root)
        let value = found.map { node in node.scalar?.string ?? (node.mapping != nil ? "a mapping" : "a list") } ?? "nothing"
        var reason = expected.map { "expected \($0)" } ?? context.debugDescription
        if expected != nil, !context.debugDescription.isEmpty, !context.debugDescription.hasPrefix("Expected to decode") {
            reason += " (\(context.debugDescription))"
        }
        if let line = found?.mark?.line { reason += " (\(path), line \(line))" } else { reason += " (\(path))" }
        return .invalidValue(key: keys.isEmpty ? "(top level)" : keys.joined(separator: "."), value: value, reason: reason)
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type, is Int64.Type, is UInt32.Type, is UInt64.Type, is Int32.Type: "an integer"
        case is Double.Type, is Float.Type: "a number"
        case is Bool.Type: "true or false"
        case is String.Type: "a string"
        default:
            "\(type)".hasPrefix("Array") ? "a list" : "a mapping of keys (see docs/CONFIGURATION.md)"
        }
    }

    /// The node at `keys` (mapping keys; list positions as numbers), if present.
    private static func node(at keys: [String], in root: Node) -> Node? {
        var current: Node? = root
        for key in keys {
            guard let node = current else { return nil }
            if let mapping = node.mapping { current = mapping[key] }
            else if let sequence = node.sequence, let index = Int(key), sequence.indices.contains(index) { current = sequence[index] }
            else { return nil }
        }
        return current
    }

    /// Sets `value` at `keys`, creating mappings on the way.
    private static func set(_ value: Node, at keys: [String], in node: inout Node) throws(ConfigError) {
        guard let key = keys.first else {
            node = value
            return
        }
        var mapping = node.mapping ?? Node.Mapping([])
        guard node.mapping != nil || node.scalar?.string.isEmpty != false else {
            throw .invalidValue(key: keys.joined(separator: "."), value: node.scalar?.string ?? "",
                                reason: "an environment override addresses a key inside a value that is not a mapping")
        }
        var child = mapping[key] ?? Node.mapping(Node.Mapping([]))
        try set(value, at: Array(keys.dropFirst()), in: &child)
        mapping[key] = child
        node = .mapping(mapping)
    }

    /// `path` made absolute against the directory of `configurationPath` when relative.
    package static func resolve(_ path: String, relativeTo configurationPath: String) -> String {
        if path.hasPrefix("/") { return path }
        let base = (configurationPath as NSString).deletingLastPathComponent
        return ((base.isEmpty ? "." : base) as NSString).appendingPathComponent(path)
    }

    /// Parses `endpoint` (``ZMQEndpoint``): a socket that binds may take every interface (`*`,
    /// `0.0.0.0`), one that connects needs an address or host name.
    @discardableResult
    package static func validateEndpoint(_ endpoint: String, key: String, bind: Bool) throws(ConfigError) -> ZMQEndpoint {
        let parsed: ZMQEndpoint
        do {
            parsed = try ZMQEndpoint(parsing: endpoint)
        } catch {
            guard case let .invalid(_, reason) = error else { throw .invalidValue(key: key, value: endpoint, reason: "\(error)") }
            throw .invalidValue(key: key, value: endpoint, reason: "\(reason) (e.g. tcp://127.0.0.1:7700)")
        }
        guard bind || !parsed.isWildcard else {
            throw .invalidValue(key: key, value: endpoint, reason: "a wildcard address can be bound, not connected to; give the host's address")
        }
        return parsed
    }
}
