import FedLogic
import Foundation
package import Logging
package import ServiceLifecycle
import Synchronization

/// Delivers stored alerts to people through the configured sinks (webhook, e-mail), from the outbox in
/// the ``AlertStore``: each alert's deliveries are written in the transaction that stores it, and a
/// delivery is marked done only after its receiver accepted it. So an alert is never lost — a failed
/// attempt is retried with exponential back-off (1 s, doubling, up to the sink's `retry_max_seconds`),
/// across restarts — and may arrive more than once (a crash between acceptance and the mark), which
/// receivers resolve by alert id. Each sink has its own loop: a slow or broken one never holds up another.
package final class AlertDelivery: Sendable {
    package struct Sink: Sendable {
        package let configuration: AlertSinkConfiguration
        let sender: Sender
        package var name: String { configuration.name }
    }

    enum Sender: Sendable {
        case webhook(WebhookSender)
        case email(SMTPClient, from: String, to: [String])
    }

    /// What happened to one delivery attempt, for metrics and logs.
    package enum Outcome: String, Sendable { case delivered, failed, givenUp = "given_up" }

    /// Attempts refused as malformed (``WebhookError/isPermanent``, ``SMTPError/isPermanent``) before a
    /// delivery is set aside.
    package static let attemptsBeforeGivingUp = 3

    package let sinks: [Sink]
    private let store: any DeliveryOutbox
    /// What a digest calls its messages.
    private let noun: String
    private let disk = BlockingQueue(label: "feddrift.delivery")
    private let poll: Duration
    private let clock: @Sendable () -> Double
    private let latest = Mutex<[String: DeliveryCounts]>([:])

    /// Builds the senders: reads webhook secrets and SMTP passwords now, so a missing or unsafe file stops
    /// the agent at start rather than at the first alert.
    package init(store: any DeliveryOutbox, sinks: [AlertSinkConfiguration], noun: String = "alerts",
                 poll: Duration = .milliseconds(250),
                 clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) throws(AlertDeliveryError) {
        self.store = store
        self.noun = noun
        self.poll = poll
        self.clock = clock
        var built: [Sink] = []
        for configuration in sinks {
            do {
                switch configuration.target {
                case let .webhook(webhook):
                    built.append(Sink(configuration: configuration, sender: .webhook(try WebhookSender(webhook))))
                case let .email(email):
                    guard let (host, port) = HTTPSettings.parse(listen: email.server) else {
                        throw AlertDeliveryError(sink: configuration.name, reason: "bad server \(email.server)")
                    }
                    let credentials = try email.username.map { user throws(SMTPError) in
                        try SMTPCredentials(username: user, passwordFile: email.passwordFile ?? "")
                    }
                    let client = try SMTPClient(host: host, port: port, starttls: email.starttls, credentials: credentials,
                                                caFile: email.caFile, timeout: email.timeoutSeconds)
                    built.append(Sink(configuration: configuration, sender: .email(client, from: email.from, to: email.to)))
                }
            } catch let error as AlertDeliveryError {
                throw error
            } catch {
                throw AlertDeliveryError(sink: configuration.name, reason: "\(error)")
            }
        }
        self.sinks = built
    }

    /// The deliveries to write with a message of a kind raised now: one per sink that takes the kind.
    package func routes(now: Double) -> @Sendable (String) -> [(sink: String, due: Double)] {
        let sinks = self.sinks.map(\.configuration)
        return { kind in sinks.filter { $0.accepts(kind: kind) }.map { ($0.name, $0.due(now: now)) } }
    }

    /// Runs every sink's loop until cancelled. `report` sees each attempt (metrics).
    package func run(logger: Logger, report: @escaping @Sendable (String, Outcome, Int) -> Void = { _, _, _ in }) async {
        guard !sinks.isEmpty else { return }
        await withTaskGroup(of: Void.self) { group in
            for sink in sinks {
                group.addTask { await self.loop(sink, logger: logger, report: report) }
            }
            // The per-sink counts /status and /metrics show, refreshed off the cooperative pool.
            group.addTask {
                while !Task.isCancelled {
                    if let counts = try? await self.disk.run({ [store = self.store] in try store.deliveryCounts() }) {
                        self.latest.withLock { $0 = counts }
                    }
                    try? await Task.sleep(for: .seconds(1))
                }
            }
        }
    }

    private func loop(_ sink: Sink, logger: Logger, report: @escaping @Sendable (String, Outcome, Int) -> Void) async {
        let store = self.store, name = sink.name
        var logged = 0
        while !Task.isCancelled {
            let now = clock()
            let batch = sink.configuration.digest == nil ? 20 : 1_000
            let due: [OutboxItem]
            do {
                due = try await disk.run { try store.due(sink: name, now: now, limit: batch) }
            } catch {
                logger.error("Cannot read the alert outbox", metadata: ["sink": "\(name)", "error": "\(error)"])
                try? await Task.sleep(for: .seconds(5))
                continue
            }
            if due.isEmpty {
                try? await Task.sleep(for: poll)
                continue
            }
            // A digest goes as one message; otherwise one alert per request or message, in order, stopping
            // at the first failure so that a receiver that is down is not hammered.
            let groups = sink.configuration.digest == nil ? due.map { [$0] } : [due]
            for group in groups {
                guard !Task.isCancelled else { return }
                let ids = group.map(\.id)
                let attempt = (group.map(\.attempts).max() ?? 0) + 1
                do {
                    try await send(group, with: sink, attempt: attempt)
                    try await disk.run { [clock] in try store.delivered(ids, sink: name, at: clock()) }
                    report(name, .delivered, ids.count)
                    if attempt > 1 || sink.configuration.digest != nil {
                        logger.info("Alerts delivered", metadata: ["sink": "\(name)", "alerts": "\(ids.count)",
                                                                    "attempt": "\(attempt)"])
                    }
                } catch {
                    let permanent = (error as? WebhookError)?.isPermanent == true || (error as? SMTPError)?.isPermanent == true
                    if permanent && attempt >= Self.attemptsBeforeGivingUp {
                        // The receiver refuses this alert as such: set it aside, go on with the next ones.
                        try? await disk.run { try store.failed(ids, sink: name, due: AlertStore.givenUp, error: "gave up: \(error)") }
                        report(name, .givenUp, ids.count)
                        logger.error("Alert delivery given up: the receiver refuses it as malformed", metadata: [
                            "sink": "\(name)", "alert.id": "\(ids[0])", "alerts": "\(ids.count)", "attempts": "\(attempt)",
                            "error": "\(error)",
                        ])
                        continue
                    }
                    let delay = min(sink.configuration.retryMaxSeconds, pow(2, Double(attempt - 1)))
                    let retryAt = clock() + delay
                    try? await disk.run { try store.failed(ids, sink: name, due: retryAt, error: "\(error)") }
                    report(name, .failed, ids.count)
                    // Every failure of the first attempts, then one line in ten: a receiver down for hours
                    // must not flood the log. Alert ids, never shopper ids.
                    logged += 1
                    if attempt <= 3 || logged % 10 == 0 {
                        logger.warning("Alert delivery failed; will retry", metadata: [
                            "sink": "\(name)", "alert.id": "\(ids[0])", "alerts": "\(ids.count)",
                            "attempt": "\(attempt)", "retry_in_seconds": "\(delay)", "error": "\(error)",
                        ])
                    }
                    try? await Task.sleep(for: .seconds(delay))
                    break
                }
            }
        }
    }

    private func send(_ items: [OutboxItem], with sink: Sink, attempt: Int) async throws {
        switch sink.sender {
        case let .webhook(sender):
            for item in items { try await sender.deliver(id: item.id, body: Array(item.json.utf8), attempt: attempt) }
        case let .email(client, from, to):
            try await client.send(from: from, to: to, message: AlertEmail.message(for: items, from: from, to: to, noun: noun))
        }
    }

    /// Per sink: pending and delivered counts (status, metrics), as of the last second.
    package var counts: [String: DeliveryCounts] { latest.withLock { $0 } }
}

/// A sink that cannot be set up (unreadable secret, bad address); names the sink.
package struct AlertDeliveryError: Error, CustomStringConvertible, Sendable {
    package var sink: String
    package var reason: String
    package var description: String { "alert sink '\(sink)': \(reason)" }
}

/// Runs an ``AlertDelivery`` as a service until shutdown (the agent's alert sinks, the aggregator's
/// trend sinks); what is not delivered by then stays in the outbox for the next start. With no sink
/// there is nothing to run, but a service that returns early would stop its group: it stays until shutdown.
package struct AlertDeliveryService: Service {
    let delivery: AlertDelivery
    let logger: Logger
    let report: @Sendable (String, AlertDelivery.Outcome, Int) -> Void

    package init(delivery: AlertDelivery, logger: Logger,
                 report: @escaping @Sendable (String, AlertDelivery.Outcome, Int) -> Void = { _, _, _ in }) {
        (self.delivery, self.logger, self.report) = (delivery, logger, report)
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown { await delivery.run(logger: logger, report: report) }
        try? await gracefulShutdown()
    }
}
