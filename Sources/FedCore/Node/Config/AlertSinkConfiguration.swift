import FedLogic
import Foundation

/// One entry of `alerts.sinks`: where the agent delivers its alerts to people (docs/ALERTS.md).
///
/// ```yaml
/// alerts:
///   sinks:
///     - name: crm                       # unique; names the sink in logs, metrics and the outbox
///       kinds: [interest_shift]         # default: every kind
///       webhook: {url: "https://crm.example.com/feddrift", secret_file: webhook.secret}
///     - name: merchandising
///       kinds: [churn_risk]
///       email: {server: "smtp.example.com:587", from: "feddrift@example.com", to: ["team@example.com"],
///               username: feddrift, password_file: smtp.password}
///       digest: {every_hours: 24, at: "08:00"}   # one message a day (UTC) instead of one per alert
/// ```
///
/// Each alert is written to the outbox with a delivery per matching sink in the same transaction that
/// stores it; a delivery is retried with exponential back-off (1 s doubling up to `retry_max_seconds`)
/// until it succeeds, across restarts.
package struct AlertSinkConfiguration: Sendable, Decodable, Equatable {
    package var name: String
    /// The kinds delivered (nil: all): an agent's `interest_shift`, `churn_risk`; the aggregator's
    /// `demand_surge`, `demand_collapse` (checked by ``validate(index:kinds:key:)``).
    package var kinds: Set<String>?
    package var target: Target
    package var digest: Digest?
    package var retryMaxSeconds: Double = 300

    package enum Target: Sendable, Equatable {
        case webhook(Webhook)
        case email(Email)
    }

    /// `webhook`: an HTTP POST of the alert JSON, signed with HMAC-SHA-256 under the secret in `secret_file`.
    package struct Webhook: Sendable, Decodable, Equatable {
        package var url: String
        package var secretFile: String
        package var timeoutSeconds: Double = 10

        package init(url: String, secretFile: String) { (self.url, self.secretFile) = (url, secretFile) }
        package init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            url = try c.decode(String.self, forKey: .url)
            secretFile = try c.decode(String.self, forKey: .secretFile)
            timeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .timeoutSeconds) ?? timeoutSeconds
        }
        enum CodingKeys: String, CodingKey, CaseIterable {
            case url, secretFile = "secret_file", timeoutSeconds = "timeout_seconds"
        }
    }

    /// `email`: SMTP submission; `starttls` is `required` (default), `when_offered` or `never` (the last
    /// two on loopback only: alerts name shoppers and must not cross a network in clear).
    package struct Email: Sendable, Decodable, Equatable {
        package var server: String
        package var from: String
        package var to: [String]
        package var starttls: StartTLS = .required
        package var username: String?
        package var passwordFile: String?
        /// PEM file of the certificate authorities to trust (default: the system's).
        package var caFile: String?
        package var timeoutSeconds: Double = 30

        package enum StartTLS: String, Sendable, Decodable, Equatable, CaseIterable {
            case required, whenOffered = "when_offered", never
        }

        package init(server: String, from: String, to: [String]) { (self.server, self.from, self.to) = (server, from, to) }
        package init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            server = try c.decode(String.self, forKey: .server)
            from = try c.decode(String.self, forKey: .from)
            to = try c.decode([String].self, forKey: .to)
            if let value = try c.decodeIfPresent(String.self, forKey: .starttls) {
                guard let mode = StartTLS(rawValue: value) else {
                    throw DecodingError.dataCorruptedError(forKey: .starttls, in: c, debugDescription:
                        "'\(value)': must be one of \(StartTLS.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                starttls = mode
            }
            username = try c.decodeIfPresent(String.self, forKey: .username)
            passwordFile = try c.decodeIfPresent(String.self, forKey: .passwordFile)
            caFile = try c.decodeIfPresent(String.self, forKey: .caFile)
            timeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .timeoutSeconds) ?? timeoutSeconds
        }
        enum CodingKeys: String, CodingKey, CaseIterable {
            case server, from, to, starttls, username, passwordFile = "password_file", caFile = "ca_file"
            case timeoutSeconds = "timeout_seconds"
        }
    }

    /// `digest`: collect the sink's alerts and send them together every `every_hours`, at `at` (UTC
    /// HH:MM) and every period after it. E-mail only.
    package struct Digest: Sendable, Decodable, Equatable {
        package var everySeconds: Double = 86_400
        package var atSeconds: Double = 8 * 3_600

        package init(everySeconds: Double, atSeconds: Double = 0) { (self.everySeconds, self.atSeconds) = (everySeconds, atSeconds) }
        package init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            if let hours = try c.decodeIfPresent(Double.self, forKey: .everyHours) { everySeconds = hours * 3_600 }
            if let seconds = try c.decodeIfPresent(Double.self, forKey: .everySeconds) { everySeconds = seconds }
            if let at = try c.decodeIfPresent(String.self, forKey: .at) {
                let parts = at.split(separator: ":")
                guard parts.count == 2, let hour = Int(parts[0]), let minute = Int(parts[1]),
                      (0..<24).contains(hour), (0..<60).contains(minute) else {
                    throw DecodingError.dataCorruptedError(forKey: .at, in: c,
                                                           debugDescription: "'\(at)': expected HH:MM (UTC), e.g. 08:00")
                }
                atSeconds = Double(hour * 3_600 + minute * 60)
            }
        }
        enum CodingKeys: String, CodingKey, CaseIterable {
            case everyHours = "every_hours", everySeconds = "every_seconds", at
        }

        /// The first digest time strictly after `time` (unix seconds): `at` plus whole periods.
        package func next(after time: Double) -> Double {
            let periods = ((time - atSeconds) / everySeconds).rounded(.down) + 1
            return atSeconds + periods * everySeconds
        }
    }

    package init(name: String, target: Target) { (self.name, self.target) = (name, target) }

    package init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        kinds = try c.decodeIfPresent([String].self, forKey: .kinds).map(Set.init)
        switch (try c.decodeIfPresent(Webhook.self, forKey: .webhook), try c.decodeIfPresent(Email.self, forKey: .email)) {
        case let (webhook?, nil): target = .webhook(webhook)
        case let (nil, email?): target = .email(email)
        default:
            throw DecodingError.dataCorruptedError(forKey: .webhook, in: c,
                                                   debugDescription: "give a sink exactly one of webhook or email")
        }
        digest = try c.decodeIfPresent(Digest.self, forKey: .digest)
        retryMaxSeconds = try c.decodeIfPresent(Double.self, forKey: .retryMaxSeconds) ?? retryMaxSeconds
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, kinds, webhook, email, digest, retryMaxSeconds = "retry_max_seconds"
    }

    /// Whether this sink receives messages of `kind`.
    package func accepts(kind: String) -> Bool { kinds?.contains(kind) ?? true }

    /// When a new alert raised at `now` falls due here: at once, or at the next digest.
    package func due(now: Double) -> Double { digest?.next(after: now) ?? now }

    /// Paths resolved against the configuration file's directory.
    mutating func resolvePaths(relativeTo file: String) {
        switch target {
        case var .webhook(webhook):
            webhook.secretFile = ConfigurationFile.resolve(webhook.secretFile, relativeTo: file)
            target = .webhook(webhook)
        case var .email(email):
            email.passwordFile = email.passwordFile.map { ConfigurationFile.resolve($0, relativeTo: file) }
            email.caFile = email.caFile.map { ConfigurationFile.resolve($0, relativeTo: file) }
            target = .email(email)
        }
    }

    /// Checks what decoding cannot: addresses, plain-text transport only on loopback, digest shape.
    package func validate(index: Int, kinds known: [String], key section: String = "alerts.sinks") throws(ConfigError) {
        let key = "\(section)[\(index)]"
        for kind in (kinds ?? []).sorted() where !known.contains(kind) {
            throw .invalidValue(key: "\(key).kinds", value: kind, reason: "kinds here are \(known.joined(separator: ", "))")
        }
        guard !name.isEmpty, name.utf8.count <= 64,
              name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) else {
            throw .invalidValue(key: "\(key).name", value: name, reason: "1 to 64 letters, digits, '-', '_' or '.'")
        }
        guard retryMaxSeconds >= 1, retryMaxSeconds <= 86_400 else {
            throw .invalidValue(key: "\(key).retry_max_seconds", value: "\(retryMaxSeconds)", reason: "must be from 1 to 86400 (a day)")
        }
        if let digest {
            guard case .email = target else {
                throw .invalidValue(key: "\(key).digest", value: "(set)", reason: "digests are for e-mail sinks; a webhook gets each alert")
            }
            guard digest.everySeconds >= 1, digest.everySeconds <= 31 * 86_400 else {
                throw .invalidValue(key: "\(key).digest.every_hours", value: "\(digest.everySeconds / 3_600)",
                                    reason: "must be positive and at most 744 (31 days)")
            }
        }
        switch target {
        case let .webhook(webhook):
            guard let url = URL(string: webhook.url), let scheme = url.scheme?.lowercased(), let host = url.host,
                  scheme == "https" || scheme == "http" else {
                throw .invalidValue(key: "\(key).webhook.url", value: webhook.url, reason: "expected an http(s) URL")
            }
            guard scheme == "https" || Self.isLoopback(host) else {
                throw .invalidValue(key: "\(key).webhook.url", value: webhook.url, reason: """
                    alerts name shoppers: use https:// (plain http:// is allowed to a loopback receiver only)
                    """)
            }
            guard webhook.timeoutSeconds > 0, webhook.timeoutSeconds <= 3_600 else {
                throw .invalidValue(key: "\(key).webhook.timeout_seconds", value: "\(webhook.timeoutSeconds)",
                                    reason: "must be positive and at most 3600")
            }
        case let .email(email):
            guard let (host, port) = HTTPSettings.parse(listen: email.server), port > 0 else {
                throw .invalidValue(key: "\(key).email.server", value: email.server, reason: "expected host:port, e.g. smtp.example.com:587")
            }
            guard email.timeoutSeconds > 0, email.timeoutSeconds <= 3_600 else {
                throw .invalidValue(key: "\(key).email.timeout_seconds", value: "\(email.timeoutSeconds)",
                                    reason: "must be positive and at most 3600")
            }
            guard email.starttls == .required || Self.isLoopback(host) else {
                throw .invalidValue(key: "\(key).email.starttls", value: email.starttls.rawValue, reason: """
                    alerts name shoppers: STARTTLS must be required unless the server is on loopback (\(host) is not)
                    """)
            }
            guard !email.to.isEmpty, (email.to + [email.from]).allSatisfy(Self.isAddress) else {
                throw .invalidValue(key: "\(key).email.to", value: (email.to + [email.from]).joined(separator: ", "),
                                    reason: "from and at least one to: plain addresses such as team@example.com")
            }
            guard (email.username == nil) == (email.passwordFile == nil) else {
                throw .invalidValue(key: "\(key).email.username", value: email.username ?? "(none)",
                                    reason: "give username and password_file together")
            }
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        ["127.0.0.1", "::1", "[::1]", "localhost"].contains(host.lowercased())
    }

    /// A bare address: one @, no spaces, angle brackets or line breaks (they would change the SMTP dialogue).
    static func isAddress(_ address: String) -> Bool {
        let parts = address.split(separator: "@", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && !parts[1].isEmpty
            && address.unicodeScalars.allSatisfy { $0.value > 32 && $0.value < 127 && !"<>(),;:\\\"[]".unicodeScalars.contains($0) }
    }
}
