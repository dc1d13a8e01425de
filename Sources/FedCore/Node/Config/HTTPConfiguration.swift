import FedLogic
import Foundation

/// `http:` in either role's configuration: the operator endpoint (`/healthz`, `/metrics`, `/status`).
/// - `listen` (`host:port`, default `127.0.0.1:0`: loopback, an ephemeral port written to
///   `http.json` in the state or data directory; give a fixed port for Prometheus to scrape);
/// - `token_file` (default `http.token` in the state or data directory, created with a random token,
///   mode 0600): every request needs `Authorization: Bearer <token>`;
/// - `insecure_loopback` (default false): `true` serves without a token, allowed on loopback only.
package struct HTTPConfiguration: Sendable, Decodable, Equatable {
    package var listen = "127.0.0.1:0"
    package var tokenFile: String?
    package var insecureLoopback = false

    package init() {}

    package init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        listen = try c.decodeIfPresent(String.self, forKey: .listen) ?? listen
        tokenFile = try c.decodeIfPresent(String.self, forKey: .tokenFile)
        insecureLoopback = try c.decodeIfPresent(Bool.self, forKey: .insecureLoopback) ?? false
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case listen, tokenFile = "token_file", insecureLoopback = "insecure_loopback"
    }

    /// The settings to serve with, files defaulting into `directory`.
    package func settings(directory: String) throws(ConfigError) -> HTTPSettings {
        guard let (host, port) = HTTPSettings.parse(listen: listen) else {
            throw .invalidValue(key: "http.listen", value: listen, reason: "expected host:port, e.g. 127.0.0.1:9100")
        }
        var settings = HTTPSettings()
        (settings.host, settings.port) = (host, port)
        settings.insecureLoopback = insecureLoopback
        guard !insecureLoopback || settings.isLoopback else {
            throw .invalidValue(key: "http.insecure_loopback", value: "true", reason: """
                serving without a token is allowed on a loopback address only (127.0.0.1, ::1); \(host) is not. \
                Keep the token (http.token_file) when the endpoint is reachable from elsewhere
                """)
        }
        settings.tokenFile = insecureLoopback ? nil : tokenFile ?? (directory as NSString).appendingPathComponent("http.token")
        return settings
    }
}
