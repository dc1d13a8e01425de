import Foundation
import Testing

/// The read-only material in `../shared` beside the project root: real data and reference oracles.
/// Tests that need it are skipped, with this message, when it is absent.
enum SharedData {
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("shared")

    static func url(_ relative: String) -> URL { root.appendingPathComponent(relative) }
    static func exists(_ relative: String) -> Bool { FileManager.default.fileExists(atPath: url(relative).path) }
    static func absentMessage(_ relative: String) -> Comment { "skipped: \(url(relative).path) is absent" }

    /// The JSON document at `relative`.
    static func json(_ relative: String) throws -> [String: Any] {
        let data = try Data(contentsOf: url(relative))
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CocoaError(.propertyListReadCorrupt)
        }
        return object
    }
}
