/// A message that could not be decoded. Malformed network input is logged and counted, never trapped on.
package enum WireError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The bytes ended before the field was complete.
    case truncated(field: String, needed: Int, available: Int)
    /// A field holds a value outside its allowed range.
    case invalidValue(field: String, reason: String)
    /// The message was written by a protocol version this build does not speak.
    case unsupportedVersion(found: Int, supported: Int)
    /// Bytes remained after the last field.
    case trailingBytes(count: Int)

    package var description: String {
        switch self {
        case let .truncated(field, needed, available):
            "message truncated in field '\(field)': needed \(needed) bytes, \(available) left"
        case let .invalidValue(field, reason): "invalid field '\(field)': \(reason)"
        case let .unsupportedVersion(found, supported):
            "protocol version \(found) is not supported (this build speaks \(supported)): upgrade the older side"
        case let .trailingBytes(count): "\(count) unexpected bytes after the end of the message"
        }
    }
}
