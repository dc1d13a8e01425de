import FedIO
import FedLogic
import Foundation
import Yams

/// Loads a role's YAML configuration. Relative paths inside the file are resolved against the file's
/// directory, so a configuration works from any working directory.
package enum ConfigurationFile {
    package static func load<T: Decodable>(_ type: T.Type, from path: String) throws(ConfigError) -> T {
        guard FileManager.default.fileExists(atPath: path) else { throw .fileNotFound(path: path) }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .unreadable(path: path, reason: error.localizedDescription)
        }
        do {
            return try YAMLDecoder().decode(T.self, from: text)
        } catch let DecodingError.keyNotFound(key, context) {
            let keyPath = (context.codingPath + [key]).map(\.stringValue).joined(separator: ".")
            throw .missingKey(path: path, key: keyPath)
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context),
                let DecodingError.dataCorrupted(context) {
            let keyPath = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw .invalid(path: path, reason: "\(keyPath.isEmpty ? "" : "'\(keyPath)': ")\(context.debugDescription)")
        } catch {
            throw .invalid(path: path, reason: "\(error)")
        }
    }

    /// `path` made absolute against the directory of `configurationPath` when relative.
    package static func resolve(_ path: String, relativeTo configurationPath: String) -> String {
        if path.hasPrefix("/") { return path }
        let base = (configurationPath as NSString).deletingLastPathComponent
        return ((base.isEmpty ? "." : base) as NSString).appendingPathComponent(path)
    }

    /// Checks that `endpoint` is a libzmq TCP or IPC endpoint.
    package static func validateEndpoint(_ endpoint: String, key: String) throws(ConfigError) {
        let valid = ["tcp://", "ipc://", "inproc://"].contains { endpoint.hasPrefix($0) } && endpoint.count > 8
        guard valid else {
            throw .invalidValue(key: key, value: endpoint, reason: "expected an endpoint like tcp://127.0.0.1:7700")
        }
    }
}
