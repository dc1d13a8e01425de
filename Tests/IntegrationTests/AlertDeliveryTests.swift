@testable import FedIO
@testable import FedLogic
@testable import FedNode
import Foundation
import Logging
import TestSupport
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Alerts delivered to people, against real servers on loopback (`scripts/alert-inbox`: a webhook
/// receiver that verifies FedDrift's HMAC signature and keeps each alert once by id, and an aiosmtpd
/// SMTP server with STARTTLS and AUTH): retries with back-off until accepted, nothing lost across a
/// restart, exactly once at the receiver, STARTTLS with certificate checks, digests — and the real
/// `edge-agent` delivering what a crashed run left in its outbox.
@Suite("Alert sinks: signed webhooks and e-mail over STARTTLS, retried and persisted", .serialized, .timeLimit(.minutes(4)))
struct AlertDeliveryTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// A scratch directory with a webhook secret (mode 0600) and, when asked, a self-signed certificate
    /// for 127.0.0.1 made by openssl.
    struct Scratch {
        let directory: URL
        let port = TestPorts.block()

        init() throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-sinks-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try write("webhook.secret", Sodium.randomBytes(24).map { String(format: "%02x", $0) }.joined() + "\n")
            try write("wrong.secret", String(repeating: "x", count: 40) + "\n")
            try write("smtp.password", "correct horse battery staple\n")
        }

        func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

        func write(_ name: String, _ text: String) throws {
            try text.write(toFile: path(name), atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path(name))
        }

        func certificate(_ name: String) async throws {
            let openssl = try ChildProcess(executable: URL(fileURLWithPath: "/usr/bin/env"), [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-keyout", "\(name).key", "-out", "\(name).pem",
            ], in: directory)
            #expect(await openssl.waitForExit(seconds: 60) == 0, "\(openssl.output)")
        }

        /// Starts `scripts/alert-inbox` writing to `inbox` and waits until it listens.
        func inbox(_ arguments: [String], into inbox: String = "inbox") async throws -> ChildProcess {
            try? FileManager.default.removeItem(atPath: path("\(inbox)/ready.json"))
            let process = try ChildProcess(executable: URL(fileURLWithPath: "/usr/bin/env"), [
                "python3", AlertDeliveryTests.repository.appendingPathComponent("scripts/alert-inbox").path,
                "--dir", inbox,
            ] + arguments, in: directory)
            let ready = await process.waitForOutput("alert inbox ready", seconds: 30)
            if process.output.contains("No module named 'aiosmtpd'") {
                Issue.record("aiosmtpd is not installed: run scripts/test, which installs it")
            }
            try #require(ready, "\(process.output)")
            return process
        }

        /// The inbox's log lines (inbox.jsonl) as objects.
        func log(_ inbox: String = "inbox") -> [[String: Any]] {
            let text = (try? String(contentsOfFile: path("\(inbox)/inbox.jsonl"), encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
        }

        func files(_ folder: String) -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: path(folder))) ?? []).filter { !$0.hasSuffix(".part") }.sorted()
        }
    }

    static func alert(_ number: Int, kind: DriftAlert.Kind = .interestShift) -> DriftAlert {
        DriftAlert(id: "region-1-\(number)-7", user: UInt64(900_000 + number), region: "region-1", time: 1_512_000_000 + Int64(number),
                   score: 9.5, threshold: 8, kind: kind, emerging: [.init(category: 110, before: 0, after: 0.6)],
                   fading: [.init(category: 100, before: 0.5, after: 0)], events: 4, modelVersion: 3,
                   recommendations: [.init(item: 1_001, category: 110, score: 0.2)],
                   explanation: "Shopper moved from category 100 to 110 over the last 4 events.")
    }

    /// Undoes quoted-printable (RFC 2045): soft breaks, then =XX bytes.
    static func decodeQuotedPrintable(_ text: String) -> String {
        let joined = Array(text.replacingOccurrences(of: "=\r\n", with: "").utf8)
        var bytes: [UInt8] = []
        var index = 0
        while index < joined.count {
            if joined[index] == UInt8(ascii: "="), index + 2 < joined.count,
               let value = UInt8(String(decoding: joined[index + 1...index + 2], as: UTF8.self), radix: 16) {
                bytes.append(value)
                index += 3
            } else {
                bytes.append(joined[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func webhook(_ name: String, port: Int, secret: String) -> AlertSinkConfiguration {
        var sink = AlertSinkConfiguration(name: name, target: .webhook(.init(url: "http://127.0.0.1:\(port)/alerts",
                                                                             secretFile: secret)))
        sink.retryMaxSeconds = 2
        return sink
    }

    /// Runs `delivery` until `done()` holds or `seconds` pass; returns whether it held.
    static func deliver(_ delivery: AlertDelivery, seconds: Double, until done: @escaping @Sendable () -> Bool) async -> Bool {
        let task = Task { await delivery.run(logger: Logger(label: "test")) }
        defer { task.cancel() }
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if done() { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return done()
    }

    @Test("Webhook: a receiver that fails twice gets every alert after back-off, each once, signed; a wrong secret is refused and nothing is marked delivered")
    func webhookRetries() async throws {
        let scratch = try Scratch()
        let inbox = try await scratch.inbox(["--webhook", "127.0.0.1:\(scratch.port)", "--secret-file", "webhook.secret",
                                             "--fail-first", "2"])
        defer { inbox.terminate() }
        // The control's receiver holds the right secret; the sink signs with another.
        let other = try await scratch.inbox(["--webhook", "127.0.0.1:\(scratch.port + 1)", "--secret-file", "webhook.secret"],
                                            into: "other")
        defer { other.terminate() }
        let store = try AlertStore(path: scratch.path("alerts.sqlite"))
        let delivery = try AlertDelivery(store: store, sinks: [
            Self.webhook("crm", port: scratch.port, secret: scratch.path("webhook.secret")),
            Self.webhook("impostor", port: scratch.port + 1, secret: scratch.path("wrong.secret")),
        ], poll: .milliseconds(50))
        let alerts = (1...3).map { Self.alert($0) }
        try store.record(alerts, routes: delivery.routes(now: Date().timeIntervalSince1970))
        let delivered = await Self.deliver(delivery, seconds: 30) {
            (try? store.deliveryCounts()["crm"]?.delivered) == 3
        }
        #expect(delivered, "\(inbox.output)")
        // Each alert stored once by the receiver, byte for byte the alert's JSON.
        #expect(scratch.files("inbox/webhook") == alerts.map { "\($0.id).json" })
        for alert in alerts {
            let body = try Data(contentsOf: URL(fileURLWithPath: scratch.path("inbox/webhook/\(alert.id).json")))
            #expect(try JSONDecoder().decode(DriftAlert.self, from: body) == alert)
        }
        let log = scratch.log()
        #expect(log.filter { $0["webhook"] as? String == "unavailable" }.count == 2, "the receiver's two 503s: \(log)")
        #expect(log.filter { $0["webhook"] as? String == "received" }.count == 3)
        // The first alert was retried: attempt 3 (after two 503s) is the one that got through.
        #expect(log.contains { $0["webhook"] as? String == "received" && $0["alert"] as? String == alerts[0].id
            && $0["attempt"] as? String == "3" }, "\(log)")
        // Control: the sink signing with another secret is refused (401) and stays pending, never delivered.
        let impostor = try #require(try store.deliveryCounts()["impostor"])
        #expect(impostor.delivered == 0 && impostor.pending == 3 && impostor.mostAttempts >= 1, "\(impostor)")
        #expect(impostor.lastError?.contains("HTTP 401") == true, "\(impostor)")
        #expect(scratch.log("other").contains { $0["webhook"] as? String == "refused" })
        #expect(scratch.files("other/webhook").isEmpty)
    }

    @Test("Webhook: alerts raised while the receiver is down survive a restart of the sender and arrive exactly once")
    func webhookSurvivesRestart() async throws {
        let scratch = try Scratch()
        let storePath = scratch.path("alerts.sqlite")
        let sink = Self.webhook("crm", port: scratch.port, secret: scratch.path("webhook.secret"))
        let alerts = (1...4).map { Self.alert($0, kind: $0.isMultiple(of: 2) ? .churnRisk : .interestShift) }
        do {
            // First run: nobody listens; every attempt fails and is recorded.
            let store = try AlertStore(path: storePath)
            let delivery = try AlertDelivery(store: store, sinks: [sink], poll: .milliseconds(50))
            try store.record(alerts, routes: delivery.routes(now: Date().timeIntervalSince1970))
            let tried = await Self.deliver(delivery, seconds: 10) {
                (try? store.deliveryCounts()["crm"]?.mostAttempts ?? 0) ?? 0 >= 2
            }
            #expect(tried)
            #expect(try store.deliveryCounts()["crm"]?.pending == 4)
        }
        // The receiver comes up; a new process (new store, new delivery) delivers from the outbox.
        let inbox = try await scratch.inbox(["--webhook", "127.0.0.1:\(scratch.port)", "--secret-file", "webhook.secret"])
        defer { inbox.terminate() }
        let store = try AlertStore(path: storePath)
        let delivery = try AlertDelivery(store: store, sinks: [sink], poll: .milliseconds(50))
        let delivered = await Self.deliver(delivery, seconds: 30) { (try? store.deliveryCounts()["crm"]?.delivered) == 4 }
        #expect(delivered, "\(inbox.output)")
        #expect(scratch.files("inbox/webhook") == alerts.map { "\($0.id).json" }.sorted())
        // A crash between the receiver's 200 and the mark re-sends an alert: the receiver keeps it once.
        let sender = try WebhookSender(.init(url: "http://127.0.0.1:\(scratch.port)/alerts", secretFile: scratch.path("webhook.secret")))
        try await sender.deliver(id: alerts[0].id, body: Array(try store.json(alerts[0]).utf8), attempt: 1)
        let log = scratch.log()
        #expect(log.filter { $0["webhook"] as? String == "received" }.count == 4)
        #expect(log.filter { $0["webhook"] as? String == "duplicate" && $0["alert"] as? String == alerts[0].id }.count == 1)
        // Control: a body that is not what was signed is refused.
        var tampered = try JSONDecoder().decode(DriftAlert.self, from: Data(try store.json(alerts[1]).utf8))
        tampered.user = 1
        var request = URLRequest(url: try #require(URL(string: "http://127.0.0.1:\(scratch.port)/alerts")))
        request.httpMethod = "POST"
        let original = Array(try store.json(alerts[1]).utf8)
        let timestamp = Int64(Date().timeIntervalSince1970)
        var secret = Array(try String(contentsOfFile: scratch.path("webhook.secret"), encoding: .utf8).prefix(48).utf8)
        let signature = WebhookSender.signature(try MessageAuthenticator(wiping: &secret), timestamp: timestamp, body: original)
        request.httpBody = try JSONEncoder().encode(tampered)
        request.setValue(alerts[1].id, forHTTPHeaderField: "FedDrift-Alert-Id")
        request.setValue("\(timestamp)", forHTTPHeaderField: "FedDrift-Timestamp")
        request.setValue(signature, forHTTPHeaderField: "FedDrift-Signature")
        let (_, response) = try await URLSession.shared.data(for: request)
        #expect((response as? HTTPURLResponse)?.statusCode == 401)
        request.httpBody = Data(original)
        let (_, accepted) = try await URLSession.shared.data(for: request)
        #expect((accepted as? HTTPURLResponse)?.statusCode == 200, "the untampered body with the same signature verifies")
    }

    @Test("E-mail over STARTTLS with AUTH to a real SMTP server: one message per alert, a digest of several; no STARTTLS or an untrusted certificate sends nothing")
    func email() async throws {
        let scratch = try Scratch()
        try await scratch.certificate("server")
        try await scratch.certificate("other")
        let inbox = try await scratch.inbox(["--smtp", "127.0.0.1:\(scratch.port)", "--tls-cert", "server.pem",
                                             "--tls-key", "server.key", "--user", "feddrift", "--password-file", "smtp.password"])
        defer { inbox.terminate() }
        func email(_ name: String, caFile: String, starttls: AlertSinkConfiguration.Email.StartTLS = .required,
                   port: Int? = nil) -> AlertSinkConfiguration {
            var email = AlertSinkConfiguration.Email(server: "127.0.0.1:\(port ?? scratch.port)", from: "feddrift@example.com",
                                                     to: ["merchandising@example.com", "crm@example.com"])
            (email.starttls, email.username, email.passwordFile, email.caFile, email.timeoutSeconds)
                = (starttls, "feddrift", scratch.path("smtp.password"), scratch.path(caFile), 10)
            var sink = AlertSinkConfiguration(name: name, target: .email(email))
            sink.retryMaxSeconds = 2
            return sink
        }
        var digest = email("digest", caFile: "server.pem")
        digest.digest = .init(everySeconds: 3)
        let store = try AlertStore(path: scratch.path("alerts.sqlite"))
        let delivery = try AlertDelivery(store: store, sinks: [
            email("immediate", caFile: "server.pem"), digest, email("untrusted", caFile: "other.pem"),
        ], poll: .milliseconds(50))
        let alerts = [Self.alert(1), Self.alert(2, kind: .churnRisk), Self.alert(3)]
        try store.record(alerts, routes: delivery.routes(now: Date().timeIntervalSince1970))
        let done = await Self.deliver(delivery, seconds: 40) {
            let counts = (try? store.deliveryCounts()) ?? [:]
            return counts["immediate"]?.delivered == 3 && counts["digest"]?.delivered == 3
        }
        #expect(done, "\(inbox.output)")
        let mails = scratch.log().filter { $0["mail"] != nil }
        #expect(mails.count == 4, "three single alerts and one digest: \(mails)")
        #expect(mails.allSatisfy { $0["tls"] as? Bool == true && $0["authenticated"] as? Bool == true }, "\(mails)")
        #expect(mails.allSatisfy { ($0["to"] as? [String])?.sorted() == ["crm@example.com", "merchandising@example.com"] })
        let raw = try scratch.files("inbox/mail").map {
            try String(contentsOfFile: scratch.path("inbox/mail/\($0)"), encoding: .utf8)
        }
        // SMTP's line limit (998) holds, although each alert's JSON is one long line: quoted-printable.
        for message in raw {
            let parts = message.components(separatedBy: "\r\n\r\n")
            #expect(message.components(separatedBy: "\r\n").allSatisfy { $0.utf8.count <= 998 })
            #expect(parts.dropFirst().joined(separator: "\r\n\r\n").components(separatedBy: "\r\n").allSatisfy { $0.utf8.count <= 76 },
                    "body lines of at most 76 characters: \(message)")
        }
        let texts = raw.map(Self.decodeQuotedPrintable)
        for alert in alerts {
            #expect(texts.contains { $0.contains("FedDrift-Alert-Ids: \(alert.id)\r\n") && $0.contains("shopper \(alert.user)") })
        }
        // Each message carries its alerts' JSON, whole.
        for alert in alerts {
            let json = try #require(texts.first { $0.contains("FedDrift-Alert-Ids: \(alert.id)\r\n") }?
                .components(separatedBy: "\r\n").first { $0.hasPrefix("{") })
            #expect(try JSONDecoder().decode(DriftAlert.self, from: Data(json.utf8)) == alert)
        }
        let digestText = try #require(texts.first { $0.contains("Subject: [FedDrift] Digest: 3 alerts") }, "\(texts)")
        #expect(digestText.contains("FedDrift-Alert-Ids: \(alerts.map(\.id).joined(separator: " "))"))
        #expect(digestText.contains("2 interest shift, 1 churn risk"))
        // Control: the sink that trusts another CA refuses the server's certificate and sends nothing.
        let untrusted = try #require(try store.deliveryCounts()["untrusted"])
        #expect(untrusted.delivered == 0 && untrusted.pending == 3, "\(untrusted)")
        #expect(untrusted.lastError?.contains("TLS") == true || untrusted.lastError?.lowercased().contains("certificate") == true,
                "\(untrusted)")

        // Control: a server without STARTTLS gets nothing from a sink that requires it (the default).
        let plainPort = scratch.port + 1
        let plain = try await scratch.inbox(["--smtp", "127.0.0.1:\(plainPort)"], into: "plain")
        defer { plain.terminate() }
        let client = try SMTPClient(host: "127.0.0.1", port: plainPort, starttls: .required, credentials: nil, caFile: nil, timeout: 10)
        await #expect(throws: SMTPError.self) {
            try await client.send(from: "feddrift@example.com", to: ["a@example.com"], message: "Subject: x\r\n\r\nx\r\n")
        }
        #expect(scratch.files("plain/mail").isEmpty)
        // …while the same server takes it from a loopback sink that allows plain text.
        let loopback = try SMTPClient(host: "127.0.0.1", port: plainPort, starttls: .whenOffered, credentials: nil, caFile: nil,
                                  timeout: 10)
        try await loopback.send(from: "feddrift@example.com", to: ["a@example.com"],
                                message: "Subject: x\r\n\r\n.a line starting with a dot\r\n")
        let sent = try String(contentsOfFile: scratch.path("plain/mail/00001.eml"), encoding: .utf8)
        #expect(sent.contains("\n.a line starting with a dot"), "dot-stuffing undone by the server: \(sent)")
    }

    @Test("An alert the receiver refuses as malformed is set aside after 3 attempts and the next ones go through; redirects are not followed")
    func givenUpAndRedirects() async throws {
        let scratch = try Scratch()
        let alerts = (1...3).map { Self.alert($0) }
        let inbox = try await scratch.inbox(["--webhook", "127.0.0.1:\(scratch.port)", "--secret-file", "webhook.secret",
                                             "--refuse-alert", alerts[1].id])
        defer { inbox.terminate() }
        let mover = try await scratch.inbox(["--webhook", "127.0.0.1:\(scratch.port + 1)", "--secret-file", "webhook.secret",
                                             "--redirect-to", "http://127.0.0.1:\(scratch.port)/alerts"], into: "mover")
        defer { mover.terminate() }
        let store = try AlertStore(path: scratch.path("alerts.sqlite"))
        let delivery = try AlertDelivery(store: store, sinks: [
            Self.webhook("crm", port: scratch.port, secret: scratch.path("webhook.secret")),
            Self.webhook("moved", port: scratch.port + 1, secret: scratch.path("webhook.secret")),
        ], poll: .milliseconds(50))
        try store.record(alerts, routes: delivery.routes(now: Date().timeIntervalSince1970))
        let settled = await Self.deliver(delivery, seconds: 30) {
            let counts = (try? store.deliveryCounts()) ?? [:]
            return counts["crm"].map { $0.delivered == 2 && $0.givenUp == 1 } == true && (counts["moved"]?.mostAttempts ?? 0) >= 2
        }
        #expect(settled, "\(String(describing: try? store.deliveryCounts()))\n\(inbox.output)")
        #expect(scratch.files("inbox/webhook") == [alerts[0].id + ".json", alerts[2].id + ".json"])
        let crm = try #require(try store.deliveryCounts()["crm"])
        #expect(crm.pending == 0 && crm.lastError?.contains("gave up") == true && crm.lastError?.contains("422") == true, "\(crm)")
        #expect(scratch.log().filter { $0["webhook"] as? String == "unprocessable" }.count == AlertDelivery.attemptsBeforeGivingUp)
        // The 307 is a failure naming the new address; the alert was not re-posted there behind the sink's back.
        let moved = try #require(try store.deliveryCounts()["moved"])
        #expect(moved.delivered == 0 && moved.lastError?.contains("redirects are not followed") == true, "\(moved)")
        #expect(scratch.log().filter { $0["webhook"] as? String == "received" }.count == 2)
        // A digest of hundreds of alerts keeps every header line within SMTP's limit (folded ids).
        let many = (1...300).map { Self.alert($0) }
        let items = many.map { OutboxItem(id: $0.id, kind: $0.kind.rawValue, json: "{}", subject: AlertEmail.subject($0),
                                          text: AlertEmail.summary($0), attempts: 0) }
        let text = AlertEmail.message(for: items, from: "a@example.com", to: ["b@example.com"])
        let header = text.components(separatedBy: "\r\n\r\n")[0]
        #expect(header.components(separatedBy: "\r\n").allSatisfy { $0.utf8.count <= 78 })
        #expect(header.replacingOccurrences(of: "\r\n ", with: " ").contains("FedDrift-Alert-Ids: " + many.map(\.id).joined(separator: " ")))
    }

    @Test("Demand-trend warnings reach the aggregator's sinks from its own outbox: a signed webhook per warning, an e-mail digest of them, each once")
    func trendWarnings() async throws {
        let scratch = try Scratch()
        let inbox = try await scratch.inbox(["--webhook", "127.0.0.1:\(scratch.port)", "--secret-file", "webhook.secret",
                                             "--smtp", "127.0.0.1:\(scratch.port + 1)"])
        defer { inbox.terminate() }
        var merchandising = AlertSinkConfiguration(name: "merchandising", target: .email(
            .init(server: "127.0.0.1:\(scratch.port + 1)", from: "feddrift@example.com", to: ["stock@example.com"])))
        if case var .email(email) = merchandising.target {
            email.starttls = .never  // a loopback server without TLS; the STARTTLS tests are above
            merchandising.target = .email(email)
        }
        merchandising.digest = .init(everySeconds: 2)
        var surges = Self.webhook("campaigns", port: scratch.port, secret: scratch.path("webhook.secret"))
        surges.kinds = ["demand_surge"]
        let store = try TrendStore(path: scratch.path("trends.sqlite"))
        let delivery = try AlertDelivery(store: store, sinks: [surges, merchandising], noun: "demand-trend warnings",
                                         poll: .milliseconds(50))
        let warnings = [
            DemandTrendWarning(category: 7, categoryID: 16_838, region: "region-2", direction: .surge, change: 1.9,
                               confidence: 0.9999, zScore: 6.1, observed: 290, expected: 100, period: 12),
            DemandTrendWarning(category: 3, region: DemandTrendDetector.allRegions, direction: .collapse, change: -0.7,
                               confidence: 0.999, zScore: -5, observed: 60, expected: 200, period: 12),
        ]
        try store.record(warnings, round: 12, routes: delivery.routes(now: Date().timeIntervalSince1970))
        try store.record(warnings, round: 12, routes: delivery.routes(now: Date().timeIntervalSince1970))  // idempotent
        let done = await Self.deliver(delivery, seconds: 30) {
            let counts = (try? store.deliveryCounts()) ?? [:]
            return counts["campaigns"]?.delivered == 1 && counts["merchandising"]?.delivered == 2
        }
        #expect(done, "\(String(describing: try? store.deliveryCounts()))\n\(inbox.output)")
        // Only the surge went to the surge-only webhook, signed and kept once by its id.
        #expect(scratch.files("inbox/webhook") == ["trend-12-region-2-7-surge.json"])
        let body = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(
            fileURLWithPath: scratch.path("inbox/webhook/trend-12-region-2-7-surge.json")))) as? [String: Any]
        #expect(body?["kind"] as? String == "demand_surge" && body?["category_index"] as? Int == 7
                && body?["category_id"] as? Int == 16_838
                && body?["region"] as? String == "region-2" && body?["round"] as? Int == 12, "\(String(describing: body))")
        // Both in one digest e-mail.
        let mails = try scratch.files("inbox/mail").map {
            Self.decodeQuotedPrintable(try String(contentsOfFile: scratch.path("inbox/mail/\($0)"), encoding: .utf8))
        }
        #expect(mails.count == 1, "\(mails)")
        #expect(mails.first?.contains("Subject: [FedDrift] Digest: 2 demand-trend warnings (1 demand surge, 1 demand collapse)") == true,
                "\(mails)")
        #expect(mails.first?.contains("Demand collapse for model category #3 in all regions together") == true)
        #expect(mails.first?.contains("Demand surge for category 16838 (model #7) in region region-2") == true)
    }

    @Test("The real edge-agent delivers what a crashed run left in its outbox, and its /status counts the deliveries")
    func agentDeliversAfterCrash() async throws {
        let federation = try await Federation(agents: [(id: "region-1", users: 10)], enrolled: ["region-1"],
                                              aggregatorSettings: "")
        let scratch = try Scratch()
        let inbox = try await scratch.inbox(["--webhook", "127.0.0.1:\(scratch.port)", "--secret-file", "webhook.secret"])
        defer { inbox.terminate() }
        try federation.appendLines("""
            alerts:
              sinks:
                - name: crm
                  kinds: [interest_shift]
                  webhook: {url: "http://127.0.0.1:\(scratch.port)/alerts", secret_file: \(scratch.path("webhook.secret"))}

            """, to: "region-1.yaml")
        // What a run that crashed after storing its alerts leaves: alerts and their deliveries, nothing sent.
        try FileManager.default.createDirectory(atPath: federation.path("data/region-1"), withIntermediateDirectories: true)
        let alerts = [Self.alert(1), Self.alert(2, kind: .churnRisk), Self.alert(3)]
        let configuration = try EdgeAgentConfiguration.load(path: federation.path("region-1.yaml"), environment: [:])
        do {
            let store = try AlertStore(path: federation.path("data/region-1/alerts.sqlite"))
            let delivery = try AlertDelivery(store: store, sinks: configuration.alerts.sinks)
            try store.record(alerts, routes: delivery.routes(now: Date().timeIntervalSince1970))
        }
        let agent = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        defer { agent.terminate() }
        var received: [String] = []
        for _ in 0..<200 where received.count < 2 {
            try await Task.sleep(for: .milliseconds(100))
            received = scratch.files("inbox/webhook")
        }
        // Only the sink's kind (interest shifts), each once.
        #expect(received == [alerts[0].id + ".json", alerts[2].id + ".json"], "\(agent.output)\n\(inbox.output)")
        var status = ""
        for _ in 0..<50 where !status.contains(#""delivered":2"#) {
            try await Task.sleep(for: .milliseconds(200))
            let query = try federation.start("edge-agent", ["status", "--config", "region-1.yaml", "--json"])
            _ = await query.waitForExit(seconds: 20)
            status = query.output
        }
        #expect(status.contains(#""deliveries":{"crm":{"delivered":2"#), "\(status)")
        // The agent's log names the sink, never a shopper.
        #expect(agent.output.contains("Alerts delivered to sink"))
        #expect(alerts.allSatisfy { !agent.output.contains("\($0.user)") }, "\(agent.output)")
    }

    @Test("Configuration: plain-text sinks off loopback, a digest on a webhook and unknown kinds are refused with the key named")
    func configuration() throws {
        func load(_ sinks: String) -> ConfigError? {
            let yaml = """
                id: region-1
                aggregator_public_key_file: keys/aggregator/identity.public
                key_directory: keys/region-1
                non_private: true
                alerts:
                  sinks:
                \(sinks)
                """
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("sinks-\(UUID().uuidString).yaml").path
            defer { try? FileManager.default.removeItem(atPath: file) }
            try? yaml.write(toFile: file, atomically: true, encoding: .utf8)
            do {
                _ = try EdgeAgentConfiguration.load(path: file, environment: [:])
                return nil
            } catch {
                return error
            }
        }
        #expect(load("""
                - name: crm
                  webhook: {url: "https://crm.example.com/feddrift", secret_file: s}
                - name: team
                  kinds: [churn_risk]
                  email: {server: "smtp.example.com:587", from: "a@example.com", to: ["b@example.com"]}
                  digest: {every_hours: 24, at: "08:00"}
            """) == nil)
        let plain = load("""
                - name: crm
                  webhook: {url: "http://crm.example.com/feddrift", secret_file: s}
            """)
        #expect(plain.map { "\($0)" }?.contains("alerts.sinks[0].webhook.url") == true, "\(String(describing: plain))")
        let clear = load("""
                - name: team
                  email: {server: "smtp.example.com:25", from: "a@example.com", to: ["b@example.com"], starttls: never}
            """)
        #expect(clear.map { "\($0)" }?.contains("starttls") == true, "\(String(describing: clear))")
        let digest = load("""
                - name: crm
                  webhook: {url: "https://crm.example.com/x", secret_file: s}
                  digest: {every_hours: 1}
            """)
        #expect(digest.map { "\($0)" }?.contains("digest") == true)
        let kind = load("""
                - name: crm
                  kinds: [interest_shfit]
                  webhook: {url: "https://crm.example.com/x", secret_file: s}
            """)
        #expect(kind.map { "\($0)" }?.contains("interest_shift") == true, "\(String(describing: kind))")
        let typo = load("""
                - name: crm
                  webhok: {url: "https://crm.example.com/x", secret_file: s}
            """)
        #expect(typo.map { "\($0)" }?.contains("did you mean 'webhook'") == true, "\(String(describing: typo))")
        // The aggregator's trend sinks take the trend kinds, and only those.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("trend-sinks-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func aggregator(_ kinds: String) throws -> AggregatorConfiguration {
            let path = directory.appendingPathComponent("aggregator.yaml").path
            try """
                key_directory: keys
                non_private: true
                agents: [{id: a, public_key_file: a.public}]
                trend_sinks:
                  - name: stock
                    kinds: [\(kinds)]
                    webhook: {url: "https://stock.example.com/trends", secret_file: s}
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return try AggregatorConfiguration.load(path: path, environment: [:])
        }
        #expect(try aggregator("demand_collapse").trendSinks.first?.kinds == ["demand_collapse"])
        #expect(throws: ConfigError.self) { _ = try aggregator("interest_shift") }
        // A digest every day at 08:00 UTC: the next one after 07:59 is 08:00 that day; after 08:00, the next day.
        let daily = AlertSinkConfiguration.Digest(everySeconds: 86_400, atSeconds: 8 * 3_600)
        let midnight: Double = 1_511_913_600  // 2017-11-29 00:00 UTC
        #expect(daily.next(after: midnight + 7 * 3_600 + 3_540) == midnight + 8 * 3_600)
        #expect(daily.next(after: midnight + 8 * 3_600) == midnight + 32 * 3_600)
    }
}
