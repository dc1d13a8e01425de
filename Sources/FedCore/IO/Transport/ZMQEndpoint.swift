import Foundation

/// A libzmq endpoint, parsed: `tcp://HOST:PORT` (an IPv4 address, a bracketed IPv6 address, a host
/// name, or `*` to bind every interface), `ipc://PATH` or `inproc://NAME`. Parsing refuses what libzmq
/// would only fail on later, or accept with a meaning nobody intended (`tcp://nonsense`, a port of 0 or
/// above 65535, an IPv4 octet above 255), and tells loopback and wildcard addresses apart, so that a
/// configuration can refuse a plain socket anywhere but on loopback.
package struct ZMQEndpoint: Sendable, Equatable, CustomStringConvertible {
    package enum Transport: String, Sendable { case tcp, ipc, inproc }
    package enum Host: Sendable, Equatable {
        case ipv4([UInt8])
        case ipv6(String)
        case name(String)
        /// `*`, `0.0.0.0` or `[::]`: every interface (bind only).
        case any
    }

    package let transport: Transport
    /// TCP only; the port is nil for `*` (bind: any free port).
    package let host: Host?
    package let port: UInt16?
    /// The IPC path or inproc name.
    package let path: String?
    package let description: String

    package enum ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        case invalid(String, reason: String)
        package var description: String {
            switch self {
            case let .invalid(text, reason): "'\(text)' is not an endpoint: \(reason)"
            }
        }
    }

    package init(parsing text: String) throws(ParseError) {
        description = text
        func fail(_ reason: String) -> ParseError { .invalid(text, reason: reason) }
        guard let separator = text.range(of: "://") else {
            throw fail("expected tcp://HOST:PORT, ipc://PATH or inproc://NAME")
        }
        guard let transport = Transport(rawValue: String(text[..<separator.lowerBound])) else {
            throw fail("the transport must be tcp, ipc or inproc")
        }
        self.transport = transport
        let rest = String(text[separator.upperBound...])
        switch transport {
        case .ipc, .inproc:
            guard !rest.isEmpty, !rest.contains(where: { $0.isWhitespace || $0 == "\0" }) else {
                throw fail("an empty \(transport.rawValue) address")
            }
            (host, port, path) = (nil, nil, rest)
        case .tcp:
            guard let colon = rest.lastIndex(of: ":") else { throw fail("no port: expected tcp://HOST:PORT") }
            let hostText = String(rest[..<colon]), portText = String(rest[rest.index(after: colon)...])
            if portText == "*" {
                port = nil
            } else {
                guard let port = UInt16(portText), port > 0, portText.allSatisfy(\.isASCII) else {
                    throw fail("the port must be a number from 1 to 65535 (or * to bind any free one)")
                }
                self.port = port
            }
            path = nil
            host = try Self.host(hostText, fail: fail)
        }
    }

    private static func host(_ text: String, fail: (String) -> ParseError) throws(ParseError) -> Host {
        if text == "*" { return .any }
        if text.hasPrefix("[") {
            guard text.hasSuffix("]"), text.count > 2 else { throw fail("an IPv6 address must be in brackets, e.g. [::1]") }
            let inner = String(text.dropFirst().dropLast())
            guard inner.contains(":"), inner.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }),
                  inner.components(separatedBy: "::").count <= 2 else {
                throw fail("'\(inner)' is not an IPv6 address")
            }
            return inner.allSatisfy({ $0 == ":" || $0 == "0" }) ? .any : .ipv6(inner.lowercased())
        }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 4, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }) {
            var octets: [UInt8] = []
            for part in parts {
                guard part.count <= 3, let octet = UInt8(part) else { throw fail("'\(text)' is not an IPv4 address") }
                octets.append(octet)
            }
            return octets == [0, 0, 0, 0] ? .any : .ipv4(octets)
        }
        // A host name (RFC 1123): labels of letters, digits and hyphens, not starting or ending with one.
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        guard !text.isEmpty, text.count <= 253, labels.allSatisfy({ label in
            (1...63).contains(label.count) && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
                && label.first != "-" && label.last != "-"
        }), labels.last?.allSatisfy(\.isNumber) == false else {
            throw fail("'\(text)' is not an IP address or host name")
        }
        return .name(text.lowercased())
    }

    /// Reachable only from this machine: a loopback address (127.0.0.0/8, ::1, localhost), an IPC path
    /// or an inproc name.
    package var isLocal: Bool {
        switch (transport, host) {
        case (.ipc, _), (.inproc, _): true
        case let (.tcp, .ipv4(octets)?): octets.first == 127
        case let (.tcp, .ipv6(address)?): address == "::1" || address == "0:0:0:0:0:0:0:1"
        case let (.tcp, .name(name)?): name == "localhost"
        default: false
        }
    }

    /// Every interface, or any port: fine to bind (with CURVE), meaningless to connect to.
    package var isWildcard: Bool { host == .any || (transport == .tcp && port == nil) }
}
