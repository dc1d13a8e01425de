import FedIO
package import FedLogic
import FedModel
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Agent messages from the ROUTER: through the gate (authenticated, opened, decoded, mapped) into the
/// ``RoundCoordinator``; answers welcomes, model requests and updates. Wakes the round driver when the
/// live agent count may have grown and when an update was accepted.
package struct UpdateIntakeService: Service {
    let server: AggregatorServer
    let wake: AsyncStream<RoundDriver.Event>.Continuation
    let modelTransfers = ModelTransferGate()

    package func run() async throws {
        let coordinator = server.coordinator, logger = server.logger
        for try await message in server.router.messages.cancelOnGracefulShutdown() {
            let openRound: UInt64? = if case .collecting(let round, _) = await coordinator.phase { round } else { nil }
            switch server.gate.open(message, openRound: openRound) {
            case .success(let request):
                if await coordinator.heard(request.agentID, at: .now) { wake.yield(.agentsChanged) }
                await server.secureDesk.heard(request.agentID, on: request.routingID)
                await handle(request)
            case .failure(let rejection):
                await coordinator.recordRejection(reason: rejection.reason, agentID: rejection.agentID)
                logger.warning("Rejected message", metadata: [
                    "reason": "\(rejection.reason)", "detail": "\(rejection.detail)",
                    "agent.id": "\(rejection.agentID ?? "-")",
                ])
                if let agentID = rejection.agentID, let routingID = rejection.routingID {
                    await server.reply(Verdict(round: openRound ?? 0, accepted: false, reason: rejection.reason),
                                       to: agentID, routingID: routingID)
                }
            }
        }
    }

    private func handle(_ request: AggregatorGate.Request) async {
        let coordinator = server.coordinator, logger = server.logger
        let agentID = request.agentID
        switch request.body {
        case .hello(let hello):
            let snapshot = await coordinator.snapshot(for: agentID)
            logger.info("Agent registered: sealed hello opened, signature verified", metadata: [
                "agent.id": "\(agentID)", "agent.version": "\(hello.softwareVersion)",
                "round.id": "\(snapshot.round)", "round.awaiting": "\(snapshot.awaiting)",
            ])
            let welcome = Welcome(aggregatorID: server.configuration.id, currentRound: snapshot.round,
                                  enrolledAgents: UInt32(server.gate.enrolledAgents.count),
                                  modelVersion: snapshot.modelVersion, openRound: snapshot.open?.wire,
                                  awaitingUpdate: snapshot.awaiting,
                                  thresholds: (await coordinator.thresholds)?.values.map(Float.init) ?? [],
                                  party: server.secureDesk.parties[agentID] ?? 1,
                                  aggregatorTimeMilliseconds: AggregatorServer.nowMilliseconds)
            await server.reply(welcome, to: agentID, routingID: request.routingID)
        case .heartbeat:
            break
        case .modelRequest(let wanted):
            let file = server.modelFile.withLock { $0 }
            let version = await coordinator.modelVersion
            let gate = modelTransfers.admit(agentID, version: version, at: .now)
            guard gate.admitted else {
                if gate.firstIgnored {
                    logger.warning("Model requests ignored: this model was sent to the agent \(modelTransfers.burst) times within \(modelTransfers.interval)", metadata: [
                        "agent.id": "\(agentID)", "model.version": "\(version)",
                    ])
                }
                break
            }
            let chunks = ModelChunk.chunks(of: file, modelVersion: version)
            logger.debug("Sending model", metadata: [
                "agent.id": "\(agentID)", "model.version": "\(version)", "agent.held_version": "\(wanted.heldVersion)",
                "chunks": "\(chunks.count)", "bytes": "\(file.count)",
            ])
            for chunk in chunks { await server.reply(chunk, to: agentID, routingID: request.routingID) }
        case .evaluation(let report):
            if let reason = await coordinator.record(EvaluationRelease(report), from: agentID) {
                logger.warning("Evaluation refused", metadata: [
                    "agent.id": "\(agentID)", "round.id": "\(report.round)", "reason": "\(reason)",
                ])
            }
        case .histogram(let report):
            if let reason = await coordinator.record(HistogramRelease(report), from: agentID) {
                logger.warning("Alert-rate release refused", metadata: [
                    "agent.id": "\(agentID)", "round.id": "\(report.round)", "reason": "\(reason)",
                ])
            }
        case .demand(let report):
            if let reason = server.trends.record(DemandRelease(report), from: agentID,
                                                 openRound: await coordinator.announcement?.round) {
                logger.warning("Demand counts refused", metadata: [
                    "agent.id": "\(agentID)", "round.id": "\(report.round)", "reason": "\(reason)",
                ])
            }
        case .receipt(let message):
            await verifyReceipt(message, from: agentID)
        case .secure(let step):
            if case .maskedInput(let input) = step, !(await coordinator.mayRelease(agentID)) {
                await coordinator.recordRejection(reason: "no_ledger_receipt", agentID: agentID)
                logger.warning("Masked update refused: no verified privacy-ledger receipt for this round", metadata: [
                    "agent.id": "\(agentID)", "round.id": "\(input.round)",
                ])
                await server.reply(Verdict(round: input.round, accepted: false, reason: "no_ledger_receipt"), to: agentID,
                                   routingID: request.routingID)
                break
            }
            if let refusal = await server.secureDesk.receive(step, from: agentID, routingID: request.routingID) {
                await coordinator.recordRejection(reason: "secure_aggregation", agentID: agentID)
                logger.warning("Secure-aggregation message refused", metadata: [
                    "agent.id": "\(agentID)", "reason": "\(refusal)",
                ])
            } else if case .maskedInput(let input) = step {
                logger.info("Masked update accepted (secure aggregation: the aggregator cannot read it alone)", metadata: [
                    "agent.id": "\(agentID)", "round.id": "\(input.round)", "message.bytes": "\(request.sealedBytes)",
                ])
                await server.reply(Verdict(round: input.round, accepted: true, reason: ""), to: agentID,
                                   routingID: request.routingID)
            }
            await server.advanceSecureAggregation(wake: wake)
        case .update(let submission):
            do {
                try await coordinator.accept(ModelUpdate(submission, from: agentID))
                Failpoint.aggregatorUpdateAccepted.reach()
                logger.info("Update accepted", metadata: [
                    "agent.id": "\(agentID)", "round.id": "\(submission.round)", "update.users": "\(submission.users)",
                    "message.bytes": "\(request.sealedBytes)",
                ])
                wake.yield(.updateAccepted(round: submission.round, received: await coordinator.receivedUpdates))
                await server.reply(Verdict(round: submission.round, accepted: true, reason: ""), to: agentID,
                                   routingID: request.routingID)
            } catch {
                logger.warning("Update rejected", metadata: [
                    "agent.id": "\(agentID)", "reason": "\(error.reason)", "detail": "\(error.description)",
                ])
                await server.reply(Verdict(round: submission.round, accepted: false, reason: error.reason), to: agentID,
                                   routingID: request.routingID)
            }
        }
    }
}

extension UpdateIntakeService {
    /// Checks an agent's privacy-ledger receipt for the open round: the entries are the agent's (hashes
    /// recompute, its signatures), chained, newer than the newest entry seen from it, and include exactly
    /// one model-update charge for this round at the sampling rate and accounted noise the round
    /// announced. Only then may its update be accepted (``RoundCoordinator/requireReceipts``).
    fileprivate func verifyReceipt(_ message: LedgerReceiptMessage, from agentID: String) async {
        let coordinator = server.coordinator, logger = server.logger
        let records = message.entries.map(LedgerRecord.init)
        let snapshot = await coordinator.snapshot(for: agentID)
        var problem: String?
        if let open = snapshot.open, open.round == message.round, let key = server.gate.signingKey(of: agentID) {
            problem = PrivacyLedger.refusal(ofReceipt: records, signer: key)
            let h = open.hyperparameters
            let expected = RoundReleasePlan(
                samplingRate: h.samplingRate, noiseMultiplier: h.noiseMultiplier,
                clipCountNoiseMultiplier: h.clipCountNoiseMultiplier > 0 ? h.clipCountNoiseMultiplier : nil,
                dimension: server.configuration.model.shape?.layout.count,
                secure: h.distributedRelease).update(round: open.round)
            let charges = records.filter { $0.isUpdate && $0.round == open.round }
            if problem == nil, charges.count != 1 {
                problem = "\(charges.count) model-update entries for round \(open.round), expected one"
            } else if problem == nil, let charge = charges.first,
                      charge.samplingRate != h.samplingRate || charge.mechanism != expected.mechanism
                        || abs(charge.noiseMultiplier - expected.noiseMultiplier) > 1e-9 * max(1, expected.noiseMultiplier) {
                problem = String(format: "the ledger charged %@ at q = %g, z = %g; the round announced q = %g, accounted z = %g",
                                 charge.mechanism, charge.samplingRate, charge.noiseMultiplier, h.samplingRate,
                                 expected.noiseMultiplier)
            }
            if problem == nil, let last = records.last {
                let head = Digest.hex(last.hash)
                let before = await coordinator.ledgerSequence(of: agentID)
                if !(await coordinator.recordReceipt(agentID: agentID, round: open.round, sequence: last.id, head: head)) {
                    problem = "its newest entry \(last.id) does not move past entry \(before) seen before "
                        + "(was the ledger emptied, cut or replaced?)"
                }
            }
        } else {
            problem = "round \(message.round) is not open"
        }
        if let problem {
            logger.warning("Ledger receipt refused: the agent's update for this round will be refused", metadata: [
                "agent.id": "\(agentID)", "round.id": "\(message.round)", "reason": "\(problem)",
            ])
            await coordinator.recordRejection(reason: "bad_ledger_receipt", agentID: agentID)
        } else {
            logger.debug("Ledger receipt verified", metadata: ["agent.id": "\(agentID)", "round.id": "\(message.round)"])
            if let spent = message.entries.last?.epsilonAfter, spent.isFinite {
                server.metrics.recordEpsilon(agent: agentID, spent: spent)
            }
        }
    }
}

/// Runs the ``RoundDriver`` state machine: each wake-up (an agent became live, an update was
/// accepted, the deadline timer fired) goes in with the live count; the actions it returns are
/// performed here — open and announce, close, checkpoint, calibrate, report. Returns after
/// `rounds.max_rounds` rounds, which ends the other services.
package struct RoundDriverService: Service {
    let server: AggregatorServer
    let wakeups: AsyncStream<RoundDriver.Event>
    let wake: AsyncStream<RoundDriver.Event>.Continuation

    /// What the report of the round in progress needs besides the coordinator's totals.
    private struct Timing {
        var started = ContinuousClock.now
        var closing = ContinuousClock.now
        var closeSeconds = 0.0
        var rejectionsBefore: [String: Int] = [:]
        var outcome: RoundCoordinator.Outcome?
        var evaluation: RoundCoordinator.Evaluation?
        /// The round ran with secure aggregation.
        var secure = false
    }

    package func run() async throws {
        defer { server.exports.finish() }
        server.regional?.attach(wake)
        if let initial = server.initialCheckpoint {
            try await server.state.save(initial.checkpoint, encodedModel: initial.model, queue: server.checkpointQueue)
        }
        var driver = RoundDriver(settings: server.driverSettings, round: server.startRound,
                                 thresholds: server.startThresholds)
        var timing = Timing()
        // At start, the first round waits a moment (up to min(3 s, T/4)) for every enrolled agent, not
        // only a quorum: agents started together register within moments of each other, and with secure
        // aggregation one that registers after the round's key step cannot take part in it.
        let timeout = Duration.milliseconds(Int64(server.configuration.rounds.timeoutSeconds * 1000))
        let startup = ContinuousClock.now + min(.seconds(3), timeout / 4)
        let enrolled = server.gate.enrolledAgents.count
        // A discarding group: each round adds timer tasks, and a plain task group keeps every finished child
        // until it is awaited (the soak saw the heap grow by a few KiB a round). Children end quietly when
        // cancelled (shutdown), so the group throws only what the loop itself throws.
        try await withThrowingDiscardingTaskGroup { group in
            wake.yield(.agentsChanged)
            group.addTask { [wake] in
                guard (try? await Task.sleep(until: startup)) != nil else { return }
                wake.yield(.agentsChanged)
            }
            events: for await event in wakeups.cancelOnGracefulShutdown() {
                let live = await server.coordinator.liveAgents(at: .now)
                if event == .agentsChanged, driver.completed == 0, live < enrolled, ContinuousClock.now < startup {
                    continue
                }
                var queue = driver.handle(event, liveAgents: live, now: AggregatorServer.nowMilliseconds)
                while !queue.isEmpty {
                    let action = queue.removeFirst()
                    if case .finish = action { break events }
                    if let next = try await perform(action, timing: &timing, group: &group) {
                        queue += driver.handle(next, liveAgents: await server.coordinator.liveAgents(at: .now),
                                               now: AggregatorServer.nowMilliseconds)
                    }
                }
            }
            group.cancelAll()
        }
    }

    /// Performs one action; returns the event it produced at once (a closed round).
    private func perform(_ action: RoundDriver.Action, timing: inout Timing,
                         group: inout ThrowingDiscardingTaskGroup<any Error>) async throws -> RoundDriver.Event? {
        let coordinator = server.coordinator, logger = server.logger, rounds = server.configuration.rounds
        switch action {
        case let .waitForAgents(live, quorum):
            logger.info("Waiting for agents", metadata: ["agents.live": "\(live)", "quorum": "\(quorum)"])
        case let .open(round, deadlineMilliseconds):
            timing = Timing(rejectionsBefore: await coordinator.rejections)
            var hyperparameters = server.configuration.announcedHyperparameters
            hyperparameters.clipNorm = await coordinator.clipNorm
            if let request = server.regional?.pending {
                // A regional round: the global round's model and plan, with this region's secure aggregation and
                // alert-rate releases.
                let own = hyperparameters
                hyperparameters = request.plan.hyperparameters
                (hyperparameters.secureThreshold, hyperparameters.secureBits) = (own.secureThreshold, own.secureBits)
                hyperparameters.histogramNoiseMultiplier = own.histogramNoiseMultiplier
                await coordinator.install(parameters: request.global.values, modelVersion: request.modelVersion)
                let file = ModelFile.encode(request.global, modelVersion: request.modelVersion)
                server.modelFile.withLock { $0 = file }
                logger.info("Regional round for the global aggregator's round", metadata: [
                    "upstream.round": "\(request.plan.round)", "model.version": "\(request.modelVersion)",
                ])
            }
            let timeout = Duration.milliseconds(deadlineMilliseconds - AggregatorServer.nowMilliseconds)
            let plan = await coordinator.open(deadline: timing.started + timeout) { opened, version in
                RoundPlan(round: opened, modelVersion: version, deadlineMilliseconds: deadlineMilliseconds,
                          minAgents: rounds.minAgents, hyperparameters: hyperparameters)
            }
            precondition(plan.round == round, "the round driver and the coordinator disagree on the round")
            let live = await coordinator.liveAgents(at: .now)
            logger.info("Round open", metadata: [
                "round.id": "\(round)", "model.version": "\(plan.modelVersion)",
                "round.deadline_s": "\(rounds.timeoutSeconds)", "agents.live": "\(live)",
            ])
            var closesAfter = timeout
            timing.secure = hyperparameters.secureThreshold > 0
            if timing.secure {
                // Secure aggregation: masked updates by the deadline, then two short steps to unmask the sum.
                await server.secureDesk.start(round: round, threshold: hyperparameters.secureThreshold,
                                              dimension: server.shape.layout.count,
                                              // every enrolled agent may still join step 0 until its deadline
                                              expected: server.gate.enrolledAgents.count,
                                              opened: timing.started, timeout: timeout)
                closesAfter = timeout + SecureRoundDesk.grace(timeout: timeout) * 2 + .milliseconds(200)
                group.addTask { [server, wake] in
                    let end = ContinuousClock.now + closesAfter
                    while ContinuousClock.now < end {
                        guard (try? await Task.sleep(for: .milliseconds(100))) != nil else { return }
                        if await server.advanceSecureAggregation(wake: wake) { return }
                    }
                }
            }
            await server.announce(plan.wire)
            Failpoint.aggregatorRoundOpened.reach()
            group.addTask { [server, wake] in
                guard (try? await Task.sleep(for: closesAfter)) != nil else { return }
                // A sum being unmasked closes the round itself (.aggregateAccepted) when it is done.
                while await server.secureDesk.unmasking {
                    guard (try? await Task.sleep(for: .milliseconds(50))) != nil else { return }
                }
                wake.yield(.deadlineReached(round: round))
            }
        case let .declineUpstream(reason):
            logger.warning("The global aggregator's round gets no regional sum", metadata: ["reason": "\(reason)"])
            server.regional?.deliver(.failed(reason))
        case let .close(round):
            timing.closing = .now
            await server.secureDesk.abandon()
            let (outcome, evaluation): (RoundCoordinator.Outcome, RoundCoordinator.Evaluation)
            if let regional = server.regional {
                let closed = await coordinator.closeForwarding()
                (outcome, evaluation) = (closed.outcome, closed.evaluation)
                if let sum = closed.sum, case .aggregated(_, let agents) = outcome {
                    regional.deliver(.sum(sum, agents: agents))
                } else {
                    regional.deliver(.failed("the regional round failed its quorum"))
                }
            } else {
                (outcome, evaluation) = await coordinator.closeWithEvaluation()
            }
            timing.outcome = outcome
            timing.evaluation = evaluation
            let aggregated = if case .aggregated = outcome { true } else { false }
            return .closed(round: round, aggregated: aggregated, alerts: await coordinator.closedAlertCounts)
        case let .checkpoint(_, thresholds):
            // The thresholds in force go into the same transaction as the round (a restart keeps them).
            await coordinator.setThresholds(thresholds)
            let checkpoint = await coordinator.checkpoint(shape: server.shape)
            let file = ModelFile.encode(checkpoint.parameters, modelVersion: checkpoint.modelVersion)
            try await server.state.save(checkpoint, encodedModel: file, queue: server.checkpointQueue)
            Failpoint.aggregatorCheckpointSaved.reach()
            server.modelFile.withLock { $0 = file }
            server.exports.yield(.model(file, version: checkpoint.modelVersion))
            timing.closeSeconds = (ContinuousClock.now - timing.closing).inSeconds
            // The round's updates were freed: give their pages back (see ProcessMemory.releaseFreeMemory).
            ProcessMemory.releaseFreeMemory()
        case let .announceThresholds(thresholds, estimate):
            let round = await coordinator.round
            let drift = server.configuration.drift
            logger.info("Alert thresholds calibrated from the agents' DP what-if releases", metadata: [
                "round.id": "\(round)", "threshold.interest_shift": "\(thresholds.interestShift)",
                "alerts.per_10k.estimated": "\(max(0, estimate.alerts) / max(1, estimate.events) * 10_000)",
                "alerts.budget_per_10k": "\(drift.alertBudgetPer10k)", "events.estimated": "\(Int(estimate.events))",
                "threshold.churn_risk": "\(thresholds.churnRisk)",
                "churn.per_1k_shopper_days.estimated":
                    "\(max(0, estimate.churnWarnings) / max(1, estimate.shopperDays) * 1_000)",
                "churn.budget_per_1k_shopper_days": "\(drift.churnBudgetPer1kShopperDays)",
            ])
            await server.announce(DriftThresholdsMessage(round: round, thresholds: thresholds.values.map(Float.init)))
        case let .report(round):
            try await report(round, timing: timing)
        case .finish:
            break
        }
        return nil
    }

    private func report(_ round: UInt64, timing: Timing) async throws {
        let coordinator = server.coordinator, logger = server.logger
        guard let outcome = timing.outcome, let evaluation = timing.evaluation else { return }
        let rejections = await coordinator.rejections
        var report = RoundReport(
            round: round, aggregated: false, agents: [], enrolledAgents: server.gate.enrolledAgents.count,
            liveAgents: await coordinator.liveAgents(at: .now), modelVersion: await coordinator.modelVersion,
            rejections: rejections.merging(timing.rejectionsBefore) { $0 - $1 }.filter { $0.value > 0 },
            evaluatedModelVersion: evaluation.modelVersion, evaluatedUsers: evaluation.users,
            top1: evaluation.top1, top10: evaluation.top10, heldOutLoss: evaluation.meanLoss,
            seconds: (ContinuousClock.now - timing.started).inSeconds, closeSeconds: timing.closeSeconds,
            secureAggregation: timing.secure)
        report.forwarded = server.regional != nil
        switch outcome {
        case let .aggregated(_, agents):
            report.aggregated = true
            report.agents = agents
            logger.info("Round aggregated, checkpoint saved", metadata: [
                "round.id": "\(round)", "agents.accepted": "\(agents.joined(separator: ","))",
                "model.version": "\(report.modelVersion)", "round.seconds": "\(report.seconds)",
            ])
        case let .failedQuorum(_, received, required):
            logger.warning("Round failed: quorum not reached by the deadline; model unchanged", metadata: [
                "round.id": "\(round)", "updates.received": "\(received)", "quorum": "\(required)",
            ])
        }
        var demand = server.trends.close(round: round)
        if let catalog = server.catalog {
            for index in demand.warnings.indices {
                demand.warnings[index].categoryID = catalog.category(atModelIndex: demand.warnings[index].category)
            }
        }
        report.demandRegions = demand.regions
        report.demandTrends = demand.warnings
        if let (store, delivery) = server.trendOutbox, !demand.warnings.isEmpty {
            // Stored with their deliveries before anything is sent (the outbox), off the round's path.
            let routes = delivery.routes(now: Date().timeIntervalSince1970), warnings = demand.warnings
            do {
                try await server.exportQueue.run { try store.record(warnings, round: round, routes: routes) }
            } catch {
                logger.error("Could not store demand-trend warnings for delivery", metadata: ["error": "\(error)"])
            }
        }
        for warning in demand.warnings {
            server.metrics.demandTrend(direction: warning.direction.rawValue)
            logger.notice("Demand trend: category \(warning.direction == .surge ? "surge" : "collapse")", metadata: [
                "category.index": "\(warning.category)", "category.id": "\(warning.categoryID.map { "\($0)" } ?? "unknown")",
                "region": "\(warning.region)",
                "change": "\(String(format: "%+.0f%%", warning.change * 100))",
                "confidence": "\(String(format: "%.4f", warning.confidence))", "round.id": "\(round)",
            ])
        }
        if let counts = await coordinator.closedAlertCounts {
            if counts.events >= 1 { report.alertsPer10kEvents = max(0, counts.alerts) / counts.events * 10_000 }
            if counts.shopperDays >= 1 { report.churnPer1kShopperDays = max(0, counts.churnWarnings) / counts.shopperDays * 1_000 }
        }
        let thresholds = await coordinator.thresholds
        server.metrics.record(report, thresholds: thresholds.map { ($0.interestShift, $0.churnRisk) })
        server.exports.yield(.report(report, rejectionsTotal: rejections, agents: await coordinator.agentRecords,
                                     thresholds: thresholds))
    }
}

/// Re-publishes the open round and the thresholds in force every second, so an agent whose
/// subscription was still connecting when they were first announced (the PUB/SUB slow joiner)
/// hears them anyway.
package struct AnnouncerService: Service {
    let server: AggregatorServer

    package func run() async throws {
        let coordinator = server.coordinator
        do {
            try await cancelWhenGracefulShutdown {
                while true {
                    try await Task.sleep(for: .seconds(1))
                    if let open = await coordinator.announcement { await server.announce(open.wire) }
                    if let thresholds = await coordinator.thresholds {
                        let round = await coordinator.round
                        await server.announce(DriftThresholdsMessage(round: round,
                                                                     thresholds: thresholds.values.map(Float.init)))
                    }
                }
            }
        } catch is CancellationError {
            // Graceful shutdown ends the sleep.
        }
    }
}

/// Off the round's path: writes `status.json` after each round, exports each new model to
/// `state_directory/models` (keeping the newest `keep_models`), and calls the progress callback.
/// Ends when the round driver finishes its stream, after writing everything queued.
package struct StatusExportService: Service {
    package enum Item: Sendable {
        case report(RoundReport, rejectionsTotal: [String: Int], agents: [String: RoundCoordinator.AgentRecord],
                    thresholds: AlertThresholds?)
        case model([UInt8], version: UInt64)
    }

    let server: AggregatorServer
    let items: AsyncStream<Item>
    /// Whether a `ServiceGroup` runs this service (then it returns only when the group shuts it down).
    package var inServiceGroup = false

    package func run() async throws {
        for await item in items {
            switch item {
            case let .model(file, version):
                let server = self.server
                // File writes with fsync: off the cooperative pool.
                try? await server.exportQueue.run { server.export(file, version: version) }
            case let .report(report, rejectionsTotal, agents, thresholds):
                let server = self.server
                try? await server.exportQueue.run {
                    server.writeStatus(report, rejectionsTotal: rejectionsTotal, agents: agents, thresholds: thresholds)
                }
                server.onRound(report)
            }
        }
        // Everything is written. In a ServiceGroup, stay until the group shuts this service down: a
        // service that returns while another is being shut down counts as failed.
        if inServiceGroup { try? await gracefulShutdown() }
    }
}

extension AggregatorServer {
    /// `status.json` in the state directory: the last round and totals, and the alert thresholds in
    /// force with the budgets they are calibrated to, for operators and scripts.
    fileprivate func writeStatus(_ report: RoundReport, rejectionsTotal: [String: Int],
                                 agents records: [String: RoundCoordinator.AgentRecord], thresholds: AlertThresholds?) {
        struct Thresholds: Encodable {
            var interestShift: Double
            var churnRisk: Double
            var alertBudgetPer10k: Double
            var churnBudgetPer1kShopperDays: Double
            enum CodingKeys: String, CodingKey {
                case interestShift = "interest_shift", churnRisk = "churn_risk"
                case alertBudgetPer10k = "alert_budget_per_10k"
                case churnBudgetPer1kShopperDays = "churn_budget_per_1k_shopper_days"
            }
        }
        struct Status: Encodable {
            var aggregatorID: String
            var lastRound: RoundReport
            var rejectionsTotal: [String: Int]
            var agents: [String: [String: UInt64]]
            var thresholds: Thresholds?
            /// "private" or "NON-PRIVATE", and what is announced.
            var privacy: [String: String]
            enum CodingKeys: String, CodingKey {
                case aggregatorID = "aggregator_id", lastRound = "last_round", rejectionsTotal = "rejections_total", agents
                case thresholds, privacy
            }
        }
        let drift = configuration.drift
        let status = Status(
            aggregatorID: configuration.id, lastRound: report, rejectionsTotal: rejectionsTotal,
            agents: records.mapValues { ["last_round": $0.lastRound, "accepted": UInt64($0.acceptedUpdates),
                                         "rejected": UInt64($0.rejectedUpdates),
                                         "ledger_sequence": UInt64(max(0, $0.ledgerSequence))] },
            thresholds: thresholds.map {
                Thresholds(interestShift: $0.interestShift, churnRisk: $0.churnRisk,
                           alertBudgetPer10k: drift.alertBudgetPer10k,
                           churnBudgetPer1kShopperDays: drift.churnBudgetPer1kShopperDays)
            }, privacy: configuration.privacySummary)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let path = (configuration.stateDirectory as NSString).appendingPathComponent("status.json")
        do {
            try encoder.encode(status).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            logger.warning("Could not write status", metadata: ["path": "\(path)", "error": "\(error)"])
        }
        let entry = RoundHistoryEntry(
            time: Date().timeIntervalSince1970, round: report.round, aggregated: report.aggregated,
            secureAggregation: report.secureAggregation, acceptedAgents: report.agents.count, liveAgents: report.liveAgents,
            enrolledAgents: report.enrolledAgents, seconds: report.seconds, modelVersion: report.modelVersion,
            evaluatedModelVersion: report.evaluatedModelVersion, evaluatedUsers: report.evaluatedUsers,
            top1: report.top1, top10: report.top10, interestShiftThreshold: thresholds?.interestShift,
            churnRiskThreshold: thresholds?.churnRisk, alertsPer10kEvents: report.alertsPer10kEvents,
            churnPer1kShopperDays: report.churnPer1kShopperDays, epsilonSpent: metrics.epsilonSpent,
            demandRegions: report.demandRegions, demandTrends: report.demandTrends)
        do {
            try history.append(entry)
        } catch {
            logger.warning("Could not append to the round history", metadata: ["path": "\(history.path)", "error": "\(error)"])
        }
    }

    /// Writes model `version` to `models/model-v<version>.fdlm` (a convenience copy for operators, not
    /// needed to resume) and removes those older than the newest `keep_models`.
    fileprivate func export(_ file: [UInt8], version: UInt64) {
        let path = (modelsDirectory as NSString).appendingPathComponent("model-v\(version).fdlm")
        guard !FileManager.default.fileExists(atPath: path) else { return }
        do {
            try ModelFile.write(encoded: file, to: path)
        } catch {
            logger.warning("Could not export the model", metadata: ["path": "\(path)", "error": "\(error)"])
            return
        }
        guard version >= UInt64(configuration.keepModels) else { return }
        let oldest = version - UInt64(configuration.keepModels) + 1
        let names = (try? FileManager.default.contentsOfDirectory(atPath: modelsDirectory)) ?? []
        for name in names where name.hasPrefix("model-v") && name.hasSuffix(".fdlm") {
            if let version = UInt64(name.dropFirst(7).dropLast(5)), version < oldest {
                try? FileManager.default.removeItem(atPath: (modelsDirectory as NSString).appendingPathComponent(name))
            }
        }
    }
}
