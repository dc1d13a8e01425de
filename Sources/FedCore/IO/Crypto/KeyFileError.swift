#if canImport(Glibc)
import Glibc

#endif

/// A key file that cannot be used. Each message names the file, the cause, and the fix.
package enum KeyFileError: Error, Equatable, CustomStringConvertible, Sendable {
    case notFound(path: String)
    case unreadable(path: String, errno: Int32)
    /// A secret-key file that group or others may read.
    case insecurePermissions(path: String, mode: UInt32)
    case malformed(path: String, line: Int, reason: String)
    /// A file of another kind, e.g. a public-key file where the secret one was expected.
    case wrongFormat(path: String, found: String, expected: String)
    case alreadyExists(path: String)
    case writeFailed(path: String, errno: Int32)

    package var description: String {
        switch self {
        case let .notFound(path):
            "no key file at \(path): create keys with `edge-agent keygen --out DIR` (agents) or "
                + "`aggregator keygen --out DIR` (aggregator), then point the configuration at DIR"
        case let .unreadable(path, code):
            "cannot read key file \(path): \(String(cString: strerror(code))); check the path and its permissions"
        case let .insecurePermissions(path, mode):
            "secret key file \(path) is readable by group or others (mode \(String(mode, radix: 8))): "
                + "run `chmod 600 \(path)` and consider the key compromised if others could read it"
        case let .malformed(path, line, reason):
            "key file \(path), line \(line): \(reason); regenerate it with keygen or restore it from backup"
        case let .wrongFormat(path, found, expected):
            "key file \(path) is a '\(found)' file, expected '\(expected)': check which file the configuration names"
        case let .alreadyExists(path):
            "\(path) already exists: keygen never overwrites keys; pass --force to replace them (old keys stop working)"
        case let .writeFailed(path, code):
            "cannot write key file \(path): \(String(cString: strerror(code)))"
        }
    }
}
