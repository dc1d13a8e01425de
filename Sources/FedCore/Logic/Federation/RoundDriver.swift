/// The aggregator's round cycle as a pure state machine: wait for a quorum of live agents, open a
/// round with a deadline, close it when every enrolled agent answered or the deadline passed,
/// checkpoint, calibrate the drift threshold from the merged DP histograms, report, and go again
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
        /// The share of users whose drift score should reach the threshold.
        package var targetAlertRate: Double
        /// Weight of a new round's threshold in the geometric moving average.
        package var smoothing: Double
        /// Below this many (noisy) users in the merged histograms, the threshold is left as it is:
        /// such a histogram is mostly noise.
        package var minimumHistogramUsers: Double = 100

        package init(minAgents: Int, enrolledAgents: Int, timeoutMilliseconds: Int64, maxRounds: Int,
                     targetAlertRate: Double, smoothing: Double) {
            (self.minAgents, self.enrolledAgents, self.maxRounds) = (minAgents, enrolledAgents, maxRounds)
            (self.timeoutMilliseconds, self.targetAlertRate) = (timeoutMilliseconds, targetAlertRate)
            self.smoothing = smoothing
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
        /// The deadline timer of `round` fired.
        case deadlineReached(round: UInt64)
        /// The coordinator closed `round`; `histogram` is the merged drift-score histograms, if any agent sent one.
        case closed(round: UInt64, aggregated: Bool, histogram: [Double]?)
    }

    package enum Action: Sendable, Equatable {
        /// Fewer live agents than the quorum: say so once per wait.
        case waitForAgents(live: Int, quorum: Int)
        /// Open `round` until `deadlineMilliseconds`, announce it, and arm the deadline timer.
        case open(round: UInt64, deadlineMilliseconds: Int64)
        /// Close `round` (aggregate if the quorum answered); answer with ``Event/closed(round:aggregated:histogram:)``.
        case close(round: UInt64)
        /// Make the closed round durable before anything else is said about it.
        case checkpoint(round: UInt64)
        /// Broadcast the new smoothed threshold (`raw` is this round's estimate from `users` noisy users).
        case announceThreshold(smoothed: Double, raw: Double, users: Int)
        case report(round: UInt64)
        /// `maxRounds` rounds ran: stop.
        case finish
    }

    package let settings: Settings
    package private(set) var phase: Phase = .waiting
    /// The last round opened (the checkpoint's round on resume).
    package private(set) var round: UInt64
    package private(set) var completed = 0
    package private(set) var smoother: ThresholdSmoother
    private var announcedWait = false

    /// - Parameters:
    ///   - round: the last completed round (0 for a new federation, the checkpoint's round on resume).
    ///   - threshold: the threshold in force (from a checkpoint), if any.
    package init(settings: Settings, round: UInt64, threshold: Double? = nil) {
        precondition(settings.minAgents >= 1 && settings.minAgents <= settings.enrolledAgents,
                     "quorum must be between 1 and the enrolled agents")
        self.settings = settings
        self.round = round
        smoother = ThresholdSmoother(weight: settings.smoothing, current: threshold)
    }

    /// The smoothed threshold in force, if one was calibrated.
    package var threshold: Double? { smoother.current }

    /// Handles one event, with `liveAgents` agents heard recently, at wall-clock `now` (Unix ms).
    package mutating func handle(_ event: Event, liveAgents: Int, now: Int64) -> [Action] {
        switch event {
        case .agentsChanged:
            guard phase == .waiting else { return [] }
            return openIfQuorum(liveAgents: liveAgents, now: now)
        case .updateAccepted(let round, let received):
            guard case .collecting(round, _) = phase, received >= settings.enrolledAgents else { return [] }
            phase = .closing(round: round)
            return [.close(round: round)]
        case .deadlineReached(let round):
            guard case .collecting(round, _) = phase else { return [] }
            phase = .closing(round: round)
            return [.close(round: round)]
        case .closed(let round, _, let histogram):
            guard phase == .closing(round: round) else { return [] }
            completed += 1
            var actions: [Action] = [.checkpoint(round: round)]
            if let calibrated = calibrate(histogram) { actions.append(calibrated) }
            actions.append(.report(round: round))
            if settings.maxRounds > 0 && completed >= settings.maxRounds {
                phase = .finished
                return actions + [.finish]
            }
            phase = .waiting
            announcedWait = false
            return actions + openIfQuorum(liveAgents: liveAgents, now: now)
        }
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

    /// This round's threshold from the merged noisy histograms, smoothed; nil when too few users were counted.
    private mutating func calibrate(_ histogram: [Double]?) -> Action? {
        guard let histogram, histogram.count == DriftHistogram.edges.count else { return nil }
        let users = histogram.reduce(0) { $0 + max(0, $1) }
        guard users >= settings.minimumHistogramUsers,
              let raw = DriftHistogram.threshold(merged: histogram, targetRate: settings.targetAlertRate) else { return nil }
        return .announceThreshold(smoothed: smoother.update(raw), raw: raw, users: Int(users))
    }
}
