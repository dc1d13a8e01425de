import Foundation

/// The optional first frame of a live-ingest message, `#stream <name> <offset>`: the message's rows
/// are rows `offset`, `offset + 1`, … of the producer's stream `name` (every row counts, refused ones
/// too). The agent stores each offset once per enrolled producer and stream (``EventStore/append(_:at:rows:)``),
/// so a producer that re-sends after a crash — its own or the agent's — adds nothing twice. Without the
/// frame a message is stored as it comes (at most once is then the producer's business).
///
/// A row never starts with `#` in either ingest format (Taobao CSV rows start with a digit, JSONL rows
/// with `{`), so the frame cannot be mistaken for a row.
package struct IngestStreamHeader: Sendable, Equatable {
    package var stream: String
    package var offset: Int64

    package static let prefix = "#stream "
    /// The longest stream name: letters, digits and `._:/-`.
    package static let maxNameLength = 200

    package init(stream: String, offset: Int64) {
        (self.stream, self.offset) = (stream, offset)
    }

    package var frame: [UInt8] { Array("\(Self.prefix)\(stream) \(offset)".utf8) }

    /// Whether `frame` is meant as a header (it starts with `#`): then it must parse.
    package static func isHeader(_ frame: [UInt8]) -> Bool { frame.first == UInt8(ascii: "#") }

    package struct Invalid: Error, CustomStringConvertible {
        package let description: String
    }

    package static func parse(_ frame: [UInt8]) throws(Invalid) -> IngestStreamHeader {
        guard frame.count <= prefix.utf8.count + maxNameLength + 21,
              let text = String(validating: frame, as: UTF8.self), text.hasPrefix(prefix) else {
            throw Invalid(description: "a first frame starting with '#' must be '#stream <name> <offset>'")
        }
        let fields = text.dropFirst(prefix.count).split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 2 else {
            throw Invalid(description: "'#stream' needs exactly a name and an offset, separated by one space")
        }
        let name = String(fields[0])
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "._:/-"))
        guard !name.isEmpty, name.count <= maxNameLength, name.unicodeScalars.allSatisfy({ $0.isASCII && allowed.contains($0) }) else {
            throw Invalid(description: "a stream name is 1–\(maxNameLength) ASCII letters, digits or ._:/-")
        }
        guard let offset = Int64(fields[1]), offset >= 0, offset <= Int64(1) << 62 else {
            throw Invalid(description: "a stream offset is a whole number from 0 to 2^62")
        }
        return IngestStreamHeader(stream: name, offset: offset)
    }
}
