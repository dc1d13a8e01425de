/// The aggregator's round cycle as a pure state machine: wait for a quorum of live agents, open a
/// round with a deadline, close it when every enrolled agent answered or the deadline passed,
/// checkpoint, calibrate the alert threshold from the merged DP alert-rate releases, report, and go again
/// until `maxRounds`. Events carry what the service observed (the live agent count, an accepted
/// update, the deadline timer, the closed round); actions say what to do next. No clock, socket or
/// file inside: the service passes wall-clock milliseconds and performs the actions, so every branch
/// is tested with tables (`RoundDriverTests`). ``RoundCoordinator`` keeps the collected updates.
package struct RoundDriver: Sendable {
    package struct Settings: Sendable, Equatable {
        /// Live agents needed to open a round, and updates needed to aggregate one.
        package var minAgents: Int
        package var enrolledAgents: Int
        package var timeoutMilliseconds: Int64
        /// Rounds to run in this process; 0 = until stopped.
        package var maxRounds: Int
        /// The alert threshold's calibration: the budget in alerts per 10k scored events, the step.
        package var calibration: AlertRateCalibration.Settings
        /// The churn threshold's: the budget in warnings per 1,000 shopper-days, the step.
        package var churnCalibration: ChurnRateCalibration.Settings
        /// The thresholds before the first calibration (the agents' cold-start values).
        package var initialThresholds: AlertThresholds
        /// A regional aggregator's rounds: each opens only when the global aggregator's round asks for one
        /// (``Event/upstreamRound(deadlineMilliseconds:)``), never on its own.
        package var paced = false

        package init(minAgents: Int, enrolledAgents: Int, timeoutMilliseconds: Int64, maxRounds: Int,
                     calibration: AlertRateCalibration.Settings, churnCalibration: ChurnRateCalibration.Settings,
                     initialThresholds: AlertThresholds) {
            (self.minAgents, self.enrolledAgents, self.maxRounds) = (minAgents, enrolledAgents, maxRounds)
            (self.timeoutMilliseconds, self.calibration) = (timeoutMilliseconds, calibration)
            (self.churnCalibration, self.initialThresholds) = (churnCalibration, initialThresholds)
        }
    }

    package enum Phase: Sendable, Equatable {
        case waiting
        case collecting(round: UInt64, deadlineMilliseconds: Int64)
        case closing(round: UInt64)
        case finished
    }

    package enum Event: Sendable, Equatable {
        /// The service started, or the number of live agents may have grown.
        case agentsChanged
        /// An update for `round` was accepted; `received` updates are in so far.
        case updateAccepted(round: UInt64, received: Int)
        /// A secure round's unmasked sum was accepted: nothing more can come, close it.
        case aggregateAccepted(round: UInt64)
        /// The deadline timer of `round` fired.
        case deadlineReached(round: UInt64)
        /// The coordinator closed `round`; `alerts` is the merged alert-rate releases, if any agent sent one.
        case closed(round: UInt64, aggregated: Bool, alerts: AlertRateCalibration.Counts?)
        /// Paced (regional) rounds: the global aggregator's round asks for one, due by `deadlineMilliseconds`.
        case upstreamRound(deadlineMilliseconds: Int64)
    }

    package enum Action: Sendable, Equatable {
        /// Fewer live agents than the quorum: say so once per wait.
        case waitForAgents(live: Int, quorum: Int)
        /// Open `round` until `deadlineMilliseconds`, announce it, and arm the deadline timer.
        case open(round: UInt64, deadlineMilliseconds: Int64)
        /// Close `round` (aggregate if the quorum answered); answer with ``Event/closed(round:aggregated:alerts:)``.
        case close(round: UInt64)
        /// Make the closed round durable, with the thresholds now in force, before anything else is
        /// said about it.
        case checkpoint(round: UInt64, thresholds: AlertThresholds)
        /// Broadcast the new thresholds; `estimate` is the round's merged releases they were moved by.
        case announceThresholds(AlertThresholds, estimate: AlertRateCalibration.Counts)
        case report(round: UInt64)
        /// `maxRounds` rounds ran: stop.
        case finish
        /// Paced: the global round's request cannot be served now (a round is still open, or too few agents
        /// are live); the regional sum for it will not come.
        case declineUpstream(reason: String)
    }

    package let settings: Settings
    package private(set) var phase: Phase = .waiting
    /// The last round opened (the checkpoint's round on resume).
    package private(set) var round: UInt64
    package private(set) var completed = 0
    /// The alert thresholds in force.
    package private(set) var thresholds: AlertThresholds
    private var announcedWait = false
    /// Paced: the deadline of a global round that asked while too few agents were live; the regional round opens
    /// as soon as enough are, if before it.
    private var upstreamDeadline: Int64?

    /// - Parameters:
    ///   - round: the last completed round (0 for a new federation, the checkpoint's round on resume).
    ///   - thresholds: the thresholds in force (from a checkpoint); nil: the settings' initial ones.
    package init(settings: Settings, round: UInt64, thresholds: AlertThresholds? = nil) {
        precondition(settings.minAgents >= 1 && settings.minAgents <= settings.enrolledAgents,
                     "quorum must be between 1 and the enrolled agents")
        self.settings = settings
        self.round = round
        self.thresholds = thresholds ?? settings.initialThresholds
    }

    /// Handles one event, with `liveAgents` agents heard recently, at wall-clock `now` (Unix ms).
    package mutating func handle(_ event: Event, liveAgents: Int, now: Int64) -> [Action] {
        switch event {
        case .agentsChanged:
            guard phase == .waiting else { return [] }
            guard settings.paced else { return openIfQuorum(liveAgents: liveAgents, now: now) }
            guard let deadline = upstreamDeadline, liveAgents >= settings.minAgents else { return [] }
            upstreamDeadline = nil
            guard deadline > now else { return [.declineUpstream(reason: "the global round's deadline has passed")] }
            return openPaced(deadline: deadline)
        case .upstreamRound(let deadline):
            guard settings.paced, phase == .waiting else {
                return [.declineUpstream(reason: "a regional round is still open")]
            }
            guard deadline > now else { return [.declineUpstream(reason: "the global round's deadline has passed")] }
            guard liveAgents >= settings.minAgents else {
                // Wait for the agents (they may still be registering) until the global round's deadline.
                upstreamDeadline = deadline
                return [.waitForAgents(live: liveAgents, quorum: settings.minAgents)]
            }
            return openPaced(deadline: deadline)
        case .updateAccepted(let round, let received):
            guard case .collecting(round, _) = phase, received >= settings.enrolledAgents else { return [] }
            phase = .closing(round: round)
            return [.close(round: round)]
        case .aggregateAccepted(let round):
            guard case .collecting(round, _) = phase else { return [] }
            phase = .closing(round: round)
            return [.close(round: round)]
        case .deadlineReached(let round):
            guard case .collecting(round, _) = phase else { return [] }
            phase = .closing(round: round)
            return [.close(round: round)]
        case .closed(let round, _, let alerts):
            guard phase == .closing(round: round) else { return [] }
            completed += 1
            let moved = alerts.flatMap { calibrate($0) }
            var actions: [Action] = [.checkpoint(round: round, thresholds: thresholds)]
            if let moved { actions.append(moved) }
            actions.append(.report(round: round))
            if settings.maxRounds > 0 && completed >= settings.maxRounds {
                phase = .finished
                return actions + [.finish]
            }
            phase = .waiting
            announcedWait = false
            return settings.paced ? actions : actions + openIfQuorum(liveAgents: liveAgents, now: now)
        }
    }

    private mutating func openPaced(deadline: Int64) -> [Action] {
        upstreamDeadline = nil
        round += 1
        phase = .collecting(round: round, deadlineMilliseconds: deadline)
        return [.open(round: round, deadlineMilliseconds: deadline)]
    }

    private mutating func openIfQuorum(liveAgents: Int, now: Int64) -> [Action] {
        guard liveAgents >= settings.minAgents else {
            guard !announcedWait else { return [] }
            announcedWait = true
            return [.waitForAgents(live: liveAgents, quorum: settings.minAgents)]
        }
        round += 1
        let deadline = now + settings.timeoutMilliseconds
        phase = .collecting(round: round, deadlineMilliseconds: deadline)
        return [.open(round: round, deadlineMilliseconds: deadline)]
    }

    /// The next thresholds from the round's merged releases; nil when they say too little (under one
    /// expected alert or warning at the budgets) to move either.
    private mutating func calibrate(_ merged: AlertRateCalibration.Counts) -> Action? {
        let shiftInformative = merged.events * settings.calibration.budgetPer10k / 10_000 >= 1
        let churn = ChurnRateCalibration.next(threshold: thresholds.churnRisk, warnings: merged.churnWarnings,
                                              days: merged.shopperDays, settings: settings.churnCalibration)
        guard shiftInformative || churn != nil else { return nil }
        if shiftInformative {
            thresholds.interestShift = AlertRateCalibration.next(threshold: thresholds.interestShift, merged: merged,
                                                                 settings: settings.calibration)
        }
        if let churn { thresholds.churnRisk = churn }
        return .announceThresholds(thresholds, estimate: merged)
    }
}
