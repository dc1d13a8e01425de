package import FedIO
package import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Why a webhook delivery failed.
package enum WebhookError: Error, CustomStringConvertible, Sendable {
    case secret(String)
    case transport(String)
    case status(Int, String)

    /// The receiver refused this alert's content (400, 413, 415, 422), which retrying will not change:
    /// the sink sets the delivery aside after a few attempts instead of holding every later alert behind
    /// it. Authentication (401, 403), a wrong address (404) and overload (408, 429, 5xx) are retried:
    /// an operator can fix them.
    package var isPermanent: Bool {
        if case let .status(code, _) = self { return [400, 413, 415, 422].contains(code) }
        return false
    }

    package var description: String {
        switch self {
        case let .secret(why): why
        case let .transport(why): "no answer: \(why)"
        case let .status(code, body):
            "HTTP \(code)\(code == 401 || code == 403 ? " (does the receiver hold the same secret_file?)" : "")"
                + (body.isEmpty ? "" : ": \(body)")
        }
    }
}

/// POSTs one alert's JSON to a receiver, signed so that the receiver can tell it from anyone else's:
///
/// - `FedDrift-Alert-Id`: the alert's id; a receiver that de-duplicates by it processes each alert
///   exactly once, although FedDrift may deliver it more than once (retries, restarts);
/// - `FedDrift-Timestamp`: unix seconds when this attempt was signed (reject old ones: replays);
/// - `FedDrift-Signature`: `v1=` and the hex HMAC-SHA-256 of `<timestamp>.<body>` under the shared secret;
/// - `FedDrift-Attempt`: 1 for the first attempt.
///
/// Any 2xx answer is a delivery; anything else, or no answer within the timeout, is retried. Redirects
/// are not followed: a 301/302 would turn the POST into a GET whose 200 is no delivery, and a 307/308
/// could send the signed alert in clear to another host; a 3xx is a failure that names the new address.
package struct WebhookSender: Sendable {
    package let url: URL
    package let timeout: Double
    private let authenticator: MessageAuthenticator
    private let session: URLSession

    /// Refuses every redirect, so the 3xx itself comes back as the answer.
    private final class NoRedirects: NSObject, URLSessionTaskDelegate, Sendable {
        func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                        newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void) {
            completionHandler(nil)
        }
    }

    package init(_ webhook: AlertSinkConfiguration.Webhook) throws(WebhookError) {
        guard let url = URL(string: webhook.url) else { throw .transport("bad URL \(webhook.url)") }
        self.url = url
        timeout = webhook.timeoutSeconds
        authenticator = try Self.authenticator(file: webhook.secretFile)
        session = URLSession(configuration: .ephemeral, delegate: NoRedirects(), delegateQueue: nil)
    }

    /// The secret in `file`: not readable by group or others (like a key), at least 16 bytes
    /// (trailing line breaks dropped). A receiver uses the same file.
    package static func authenticator(file: String) throws(WebhookError) -> MessageAuthenticator {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: file),
              var bytes = FileManager.default.contents(atPath: file).map(Array.init) else {
            throw .secret("cannot read the webhook secret_file \(file) (create one: head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE)")
        }
        defer { Sodium.wipe(&bytes) }
        if let mode = attributes[.posixPermissions] as? Int, mode & 0o077 != 0 {
            throw .secret("webhook secret_file \(file) is readable by others (mode \(String(mode, radix: 8))): chmod 600 it")
        }
        var trimmed = Array(bytes.prefix { $0 != 10 && $0 != 13 })
        do {
            return try MessageAuthenticator(wiping: &trimmed)
        } catch {
            throw .secret("webhook secret_file \(file): \(error) (use at least 16 random bytes)")
        }
    }

    /// The signature header's value for `body` signed at `timestamp`.
    package static func signature(_ authenticator: MessageAuthenticator, timestamp: Int64, body: [UInt8]) -> String {
        "v1=" + authenticator.authenticate(Array("\(timestamp).".utf8), body).map { String(format: "%02x", $0) }.joined()
    }

    /// One attempt. Returns normally on a 2xx answer.
    package func deliver(id: String, body: [UInt8], attempt: Int) async throws(WebhookError) {
        let timestamp = Int64(Date().timeIntervalSince1970)
        var request = URLRequest(url: url, timeoutInterval: timeout)
        request.httpMethod = "POST"
        request.httpBody = Data(body)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue("FedDrift-EdgeAgent", forHTTPHeaderField: "User-Agent")
        request.setValue(id, forHTTPHeaderField: "FedDrift-Alert-Id")
        request.setValue("\(timestamp)", forHTTPHeaderField: "FedDrift-Timestamp")
        request.setValue(Self.signature(authenticator, timestamp: timestamp, body: body), forHTTPHeaderField: "FedDrift-Signature")
        request.setValue("\(attempt)", forHTTPHeaderField: "FedDrift-Attempt")
        let (data, response): (Data, URLResponse)
        do {
            (data, response) = try await session.data(for: request)
        } catch {
            throw .transport("\(url.host ?? "?"): \(error.localizedDescription)")
        }
        let http = response as? HTTPURLResponse
        let status = http?.statusCode ?? 0
        if (300..<400).contains(status) {
            throw .status(status, "redirects are not followed; set webhook.url to "
                + (http?.value(forHTTPHeaderField: "Location") ?? "the new address"))
        }
        guard (200..<300).contains(status) else {
            throw .status(status, String(decoding: data.prefix(200), as: UTF8.self))
        }
    }
}
