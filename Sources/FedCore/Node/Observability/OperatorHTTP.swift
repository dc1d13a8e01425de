import FedIO
package import Foundation
import Hummingbird
package import Logging
import NIOCore
package import Prometheus
package import ServiceLifecycle

/// Where a node's operator endpoint listens and how it admits clients (`http:` in either configuration).
/// Every request needs `Authorization: Bearer <token>`, the token in `token_file` (created, mode 0600,
/// when missing); only a loopback address with `insecure_loopback: true` serves without one.
package struct HTTPSettings: Sendable, Equatable {
    package var host = "127.0.0.1"
    /// 0: an ephemeral port, written with the host to `<directory>/http.json` for `status` commands.
    package var port = 0
    package var tokenFile: String?
    package var insecureLoopback = false

    package init() {}

    package var isLoopback: Bool { ["127.0.0.1", "::1", "localhost"].contains(host) }

    /// Parses `host:port` (IPv6 in brackets).
    package static func parse(listen: String) -> (host: String, port: Int)? {
        if listen.hasPrefix("["), let close = listen.firstIndex(of: "]") {
            let host = String(listen[listen.index(after: listen.startIndex)..<close])
            let rest = listen[listen.index(after: close)...]
            guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()), (0...65535).contains(port), !host.isEmpty else { return nil }
            return (host, port)
        }
        let parts = listen.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, let port = Int(parts[1]), (0...65535).contains(port) else { return nil }
        return (String(parts[0]), port)
    }
}

/// Where a running node's endpoint is, for `status` commands: `<directory>/http.json`.
package struct HTTPAnnouncement: Codable, Sendable, Equatable {
    package var host: String
    package var port: Int
    package var tokenFile: String?

    enum CodingKeys: String, CodingKey { case host, port, tokenFile = "token_file" }

    package static func path(in directory: String) -> String {
        (directory as NSString).appendingPathComponent("http.json")
    }
}

package enum OperatorHTTPError: Error, CustomStringConvertible {
    case token(path: String, reason: String)

    package var description: String {
        switch self {
        case let .token(path, reason): "http token file \(path): \(reason)"
        }
    }
}

/// The operator endpoint of a node: `GET /healthz`, `/metrics` (Prometheus text format), `/status`
/// (JSON), as a Hummingbird application that runs as a service beside the node's others.
package enum OperatorHTTP {
    /// The bearer token: read from `path`, or created there (32 random bytes, hex, mode 0600).
    package static func token(at path: String) throws(OperatorHTTPError) -> String {
        if let data = FileManager.default.contents(atPath: path) {
            let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard token.utf8.count >= 16 else { throw .token(path: path, reason: "holds fewer than 16 characters") }
            return token
        }
        let token = Digest.hex(Sodium.randomBytes(32))
        guard FileManager.default.createFile(atPath: path, contents: Data((token + "\n").utf8),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw .token(path: path, reason: "cannot be created")
        }
        return token
    }

    /// The service: serves until the group shuts it down. `status` is the JSON body of `/status`;
    /// `refresh` brings the gauges up to date before each scrape.
    package static func service(settings: HTTPSettings, token: String?, registry: PrometheusCollectorRegistry,
                                announceIn directory: String, logger: Logger,
                                refresh: @escaping @Sendable () async -> Void = {},
                                pages: [String: @Sendable () async -> String] = [:],
                                status: @escaping @Sendable () async -> Data) -> some Service {
        let router = Router()
        router.add(middleware: BearerTokenMiddleware(token: token.map { Array($0.utf8) }))
        router.get("healthz") { _, _ in "ok\n" }
        // HTML pages for browsers (the dashboard, the agent's alerts), behind the same token: a browser
        // signs in once at /login?token=…, which sets it as an HttpOnly, SameSite=Strict cookie.
        for (path, render) in pages {
            router.get(RouterPath(path)) { _, _ -> Response in
                Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                         body: .init(byteBuffer: ByteBuffer(string: await render())))
            }
        }
        router.get("metrics") { _, _ -> Response in
            await refresh()
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
        router.get("status") { _, _ -> Response in
            let body = await status()
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
        let host = settings.host, tokenFile = token == nil ? nil : settings.tokenFile
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: settings.port), serverName: "FedDrift"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? settings.port
                let announcement = HTTPAnnouncement(host: host, port: port, tokenFile: tokenFile)
                if let data = try? JSONEncoder().encode(announcement) {
                    try? data.write(to: URL(fileURLWithPath: HTTPAnnouncement.path(in: directory)), options: .atomic)
                }
                logger.notice("Operator endpoint listening: /healthz, /metrics, /status\(pages.keys.sorted().map { ", /" + $0 }.joined())", metadata: [
                    "http.address": "\(host):\(port)",
                    "http.auth": "\(token == nil ? "none (insecure_loopback)" : "bearer token")",
                ])
            },
            logger: logger)
    }
}

/// Refuses every request without the token (compared in constant time): `Authorization: Bearer <token>`
/// (scripts, Prometheus), or the `feddrift_token` cookie that `GET /login?token=<token>&next=/path`
/// sets for a browser (HttpOnly, SameSite=Strict) before redirecting to `next` (a local path).
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: [UInt8]?
    /// The cookie holds a value derived from the token (HMAC-SHA-256 of a fixed label under it), never
    /// the token, under a name of its own per node: browsers keep cookies per host, not per port, so
    /// the nodes on one host (an aggregator and agents run by different people) neither overwrite nor
    /// receive each other's.
    let cookieName: String
    let cookieValue: [UInt8]

    init(token: [UInt8]?) {
        self.token = token
        guard var key = token, key.count >= 16, let authenticator = try? MessageAuthenticator(wiping: &key) else {
            (cookieName, cookieValue) = ("feddrift_session", [])
            return
        }
        let derived = authenticator.authenticate(Array("feddrift browser session".utf8))
        let hex = derived.map { String(format: "%02x", $0) }.joined()
        cookieName = "feddrift_" + hex.prefix(12)
        cookieValue = Array(hex.utf8)
    }

    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token else {
            if request.uri.path == "/login" { return Self.redirect(to: Self.next(in: request), cookie: nil) }
            return try await next(request, context)
        }
        if request.uri.path == "/login" {
            let presented = request.uri.queryParameters["token"].map { Array(String($0).utf8) } ?? []
            guard Sodium.constantTimeEquals(presented, token) else { return Self.refusal() }
            return Self.redirect(to: Self.next(in: request), cookie: "\(cookieName)=\(String(decoding: cookieValue, as: UTF8.self))")
        }
        let bearer = request.headers[.authorization].map { Array($0.utf8) } ?? []
        let cookies = request.headers[values: .cookie].flatMap { $0.split(separator: ";") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
        let fromCookie = cookies.first { $0.hasPrefix(cookieName + "=") }.map { Array($0.dropFirst(cookieName.count + 1).utf8) }
        guard Sodium.constantTimeEquals(bearer, Array("Bearer ".utf8) + token)
                || fromCookie.map({ !cookieValue.isEmpty && Sodium.constantTimeEquals($0, cookieValue) }) == true else {
            return Self.refusal()
        }
        return try await next(request, context)
    }

    /// `next` if it is a plain path on this server — `/` then letters, digits, `/`, `-`, `_`, `.`, no
    /// `//` (browsers drop tabs and line breaks from URLs, so `/\t/evil.example` would lead elsewhere) —
    /// else /.
    static func next(in request: Request) -> String {
        let next = request.uri.queryParameters["next"].map(String.init) ?? "/"
        let plain = next.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "/-_.".unicodeScalars.contains($0)) }
        return next.hasPrefix("/") && !next.contains("//") && plain ? next : "/"
    }

    static func redirect(to path: String, cookie: String?) -> Response {
        var headers: HTTPFields = [.location: path, .cacheControl: "no-store"]
        if let cookie { headers[.setCookie] = "\(cookie); Path=/; HttpOnly; SameSite=Strict" }
        return Response(status: .seeOther, headers: headers)
    }

    static func refusal() -> Response {
        Response(status: .unauthorized, headers: [.wwwAuthenticate: "Bearer"],
                 body: .init(byteBuffer: ByteBuffer(string: "a bearer token is required (the node's http token file)\n")))
    }
}
