import Foundation

/// Churn risk: the early warning that an active shopper is drifting away — their sessions stop.
///
/// Each shopper's session rate is learned as a Gamma posterior (shape a₀ + S, rate b₀ + E), where S is
/// their recency-weighted number of sessions and E their recency-weighted active time in days (both
/// with half-life `halfLifeDays`, so a shopper's recent habits count most). Under it, the probability
/// of a silence of s days is the negative-binomial zero term P(0 | s) = (β / (β + s))^α, and the
/// **risk** is its surprise −log P(0 | s) = α·log(1 + s/β), in nats: it grows with the silence, faster
/// for a shopper who came often and steadily than for an occasional one (the heterogeneity that a
/// fixed "inactive for N days" rule ignores; the Pareto/NBD view of customer activity).
///
/// A shopper is at risk once their risk reaches the threshold; one warning per silence (the next event
/// ends it). Because silence makes no events, risk is checked on a clock (``check(_:now:threshold:)``);
/// the silence at which the risk reaches a threshold is closed-form (``silenceToReach(_:state:)``), so
/// what-if counts need no clock. Per user: two doubles, two integers, a flag — no allocation.
package struct ChurnDetector: Sendable {
    package struct Settings: Sendable, Equatable, Codable {
        /// A gap longer than this (seconds) starts a new session.
        package var sessionGapSeconds: Int64 = 1_800
        /// Gamma prior of the session rate: a₀ pseudo-sessions over b₀ days (a mean of a₀/b₀ a day).
        package var priorSessions = 1.0
        package var priorDays = 1.0
        /// Half-life (days) of the weight of past sessions and active time.
        package var halfLifeDays = 7.0
        /// Sessions a shopper needs before their silence is scored (they must have been active).
        package var warmUpSessions = 4

        package init() {}

        package enum CodingKeys: String, CodingKey, CaseIterable {
            case sessionGapSeconds = "session_gap_seconds", priorSessions = "prior_sessions"
            case priorDays = "prior_days", halfLifeDays = "half_life_days", warmUpSessions = "warm_up_sessions"
        }

        /// Reads the keys present; the others keep their defaults. Values out of range are refused
        /// with the key named.
        package init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.init()
            func read<T: Decodable>(_ key: CodingKeys, into value: inout T) throws {
                if let decoded = try container.decodeIfPresent(T.self, forKey: key) { value = decoded }
            }
            try read(.sessionGapSeconds, into: &sessionGapSeconds)
            try read(.priorSessions, into: &priorSessions)
            try read(.priorDays, into: &priorDays)
            try read(.halfLifeDays, into: &halfLifeDays)
            try read(.warmUpSessions, into: &warmUpSessions)
            if let problem = validationProblem {
                throw DecodingError.dataCorrupted(.init(codingPath: container.codingPath + [problem.key],
                                                        debugDescription: problem.reason))
            }
        }

        /// The first setting out of range, if any.
        package var validationProblem: (key: CodingKeys, reason: String)? {
            if !(60...86_400).contains(sessionGapSeconds) {
                return (.sessionGapSeconds, "\(sessionGapSeconds) is not in 60...86400")
            }
            for (key, value) in [(CodingKeys.priorSessions, priorSessions), (.priorDays, priorDays),
                                 (.halfLifeDays, halfLifeDays)] where !(value > 0 && value.isFinite) {
                return (key, "\(value) must be positive")
            }
            if !(1...1_000).contains(warmUpSessions) { return (.warmUpSessions, "\(warmUpSessions) is not in 1...1000") }
            return nil
        }
    }

    /// One shopper's state.
    package struct UserState: Sendable, Equatable {
        package fileprivate(set) var lastTime: Int64?
        /// Recency-weighted sessions and active days, as of `lastTime`.
        package fileprivate(set) var sessions = 0.0
        package fileprivate(set) var activeDays = 0.0
        package fileprivate(set) var sessionCount = 0
        /// Recency-weighted carts, favourites and purchases per session (intent), for the explanation.
        package fileprivate(set) var intent = 0.0
        /// Whether this silence has already been warned about.
        package fileprivate(set) var warned = false
        /// When this silence reaches the threshold it was scheduled for (``schedule(_:threshold:)``),
        /// so that a clock check skips the shoppers not yet due with one comparison.
        package fileprivate(set) var due = Int64.max

        package init() {}
    }

    package let settings: Settings
    private let decayPerDay: Double

    package init(settings: Settings = Settings()) {
        self.settings = settings
        decayPerDay = log(2) / settings.halfLifeDays
    }

    /// Takes one of the shopper's events (in time order; an earlier time counts as no time passing).
    package func observe(_ state: inout UserState, time: Int64, intent: Bool) {
        let days = state.lastTime.map { Double(max(0, time - $0)) / 86_400 } ?? 0
        let newSession = state.lastTime.map { time - $0 > settings.sessionGapSeconds } ?? true
        // Active time grows only inside the shopper's usual rhythm: a gap counts in full (the
        // exposure of the rate estimate), decayed continuously: E ← E·d + (1 − d)/κ.
        let d = exp(-decayPerDay * days)
        state.activeDays = state.activeDays * d + (1 - d) / decayPerDay
        state.sessions *= d
        state.intent *= d
        if newSession {
            state.sessions += 1
            state.sessionCount += 1
        }
        if intent { state.intent += 1 }
        state.lastTime = max(state.lastTime ?? time, time)
        state.warned = false
    }

    /// The Gamma posterior's shape and rate (per day).
    private func posterior(_ state: UserState) -> (alpha: Double, beta: Double) {
        (settings.priorSessions + state.sessions, settings.priorDays + state.activeDays)
    }

    /// −log(λ̂ · P(no session in the silence up to `now`)), nats: the surprise of the silence less the
    /// log of the shopper's expected sessions a day λ̂ = α/β. A shopper with λ̂ sessions a day has about
    /// λ̂ silences a day that could grow long, so e^(−risk) is about how often per day a silence this
    /// long occurs to them — the same unit for frequent and occasional shoppers, and the unit of the
    /// operator's budget. −∞ before warm-up (no evidence).
    package func risk(_ state: UserState, now: Int64) -> Double {
        guard let last = state.lastTime, state.sessionCount >= settings.warmUpSessions else { return -.infinity }
        let silence = Double(max(0, now - last)) / 86_400
        let (alpha, beta) = posterior(state)
        return alpha * log1p(silence / beta) - log(alpha / beta)
    }

    /// Seconds of silence after the shopper's last event at which their risk reaches `threshold`;
    /// nil before warm-up.
    package func silenceToReach(_ threshold: Double, state: UserState) -> Double? {
        guard state.lastTime != nil, state.sessionCount >= settings.warmUpSessions else { return nil }
        let (alpha, beta) = posterior(state)
        let surprise = max(0, threshold + log(alpha / beta))
        return beta * expm1(surprise / alpha) * 86_400
    }

    /// Sets when the shopper's current silence reaches `threshold` (never before warm-up).
    package func schedule(_ state: inout UserState, threshold: Double) {
        guard let last = state.lastTime, let silence = silenceToReach(threshold, state: state),
              silence < Double(Int64.max / 4) else {
            state.due = .max
            return
        }
        state.due = last + Int64(silence.rounded(.up))
    }

    /// Whether the shopper should be warned at `now`: their risk reached `threshold` and this silence
    /// has not been warned about yet. Marks the silence as warned.
    package func check(_ state: inout UserState, now: Int64, threshold: Double) -> Bool {
        guard !state.warned, risk(state, now: now) >= threshold else { return false }
        state.warned = true
        return true
    }

    /// The shopper's usual sessions per day (posterior mean).
    package func sessionsPerDay(_ state: UserState) -> Double {
        let (alpha, beta) = posterior(state)
        return alpha / beta
    }

    /// One silence of a shopper's history as the live clock sees it: the risk at the last check
    /// before the silence ended (`atEnd`, a check in the window) and at the last check before the
    /// window began (`beforeWindow`; −∞ when the silence had no check then). At threshold θ the silence
    /// raises a warning inside the window exactly when `atEnd ≥ θ > beforeWindow` (risk only grows with
    /// the silence, and a silence warns once).
    package struct Silence: Sendable, Equatable {
        package var atEnd: Double
        package var beforeWindow: Double

        package func warns(at threshold: Double) -> Bool { atEnd >= threshold && beforeWindow < threshold }
    }

    /// The silences of a shopper's history (events in time order, with intent) replayed as live
    /// scoring would see them, with checks every `checkSeconds` of event time — a check at time T comes
    /// before the events at or after T — that have a check in the last `windowDays` before `now`; and
    /// the shopper's days at risk in that window (from when they had the warm-up sessions). Independent
    /// of the threshold, so one replay serves every threshold.
    package func silences(times: [Int64], intents: [Bool], now: Int64, checkSeconds: Int64,
                          windowDays: Double) -> (silences: [Silence], days: Double) {
        let windowStart = now - Int64(windowDays * 86_400)
        let lastBeforeWindow = (windowStart - 1) / checkSeconds * checkSeconds
        var state = UserState(), found: [Silence] = [], atRiskFrom: Int64?
        func silence(endingAt end: Int64) {
            guard let last = state.lastTime else { return }
            let check = end / checkSeconds * checkSeconds
            guard check > last, check >= windowStart else { return }
            let before = lastBeforeWindow > last ? risk(state, now: lastBeforeWindow) : -.infinity
            found.append(Silence(atEnd: risk(state, now: check), beforeWindow: before))
        }
        for (index, time) in times.enumerated() {
            silence(endingAt: time)
            observe(&state, time: time, intent: index < intents.count && intents[index])
            if atRiskFrom == nil && state.sessionCount >= settings.warmUpSessions { atRiskFrom = time }
        }
        silence(endingAt: now)
        guard let atRiskFrom else { return (found, 0) }
        return (found, min(windowDays, Double(max(0, now - max(atRiskFrom, windowStart))) / 86_400))
    }

    /// What-if counts for one shopper (``ChurnRateCalibration``): the warnings live scoring would have
    /// raised at `threshold` in the last `windowDays` before `now` (clipped to `clip`), and the days.
    package func whatIf(times: [Int64], intents: [Bool], now: Int64, threshold: Double, checkSeconds: Int64,
                        windowDays: Double, clip: Int) -> (warnings: Int, days: Double) {
        let replay = silences(times: times, intents: intents, now: now, checkSeconds: checkSeconds,
                              windowDays: windowDays)
        return (min(clip, replay.silences.filter { $0.warns(at: threshold) }.count), replay.days)
    }
}

/// The churn threshold's calibration to the operator's budget in **warnings per 1,000 shopper-days**,
/// the same way as the interest-shift threshold's (``AlertRateCalibration``): each round, every agent
/// counts the warnings its sampled shoppers' histories would have raised at the threshold in force in
/// the last `windowDays` before its newest event, and the days at risk; it releases both sums with
/// Gaussian noise (in the same release as the alert counts); the aggregator moves the threshold by
/// η·clamp(log(rate / budget), −1, 1) nats.
package enum ChurnRateCalibration {
    package struct Settings: Sendable, Equatable {
        /// The operator's budget: churn warnings per 1,000 shopper-days.
        package var budgetPer1kDays: Double
        /// Per-user clip of the released warning count (one: at the budgets operators set, a shopper
        /// warned twice within a week is rare, and a clip of 1 keeps the noise of the count at z), and
        /// the days counted (also their clip): the last 7 days before the store's newest event, each
        /// shopper's from the end of their warm-up (days at risk), so that young states do not dilute
        /// the rate. A 3-day window gave too few warnings a round at 3 × 1,000 shoppers: 7 of 50 seeds
        /// met a budget of 5 within ×1.5 (AlertCalibrationTests; 50 of 50 with 7 days).
        package var warningClip = 1
        package var windowDays = 7.0
        /// A quarter of the interest-shift step: churn warnings are far fewer than alerts, so each
        /// round's release is noisy, and a small step averages it over rounds.
        package var step = 0.25
        package var minimum = -10.0, maximum = 60.0

        package init(budgetPer1kDays: Double) { self.budgetPer1kDays = budgetPer1kDays }
    }

    /// The next threshold from merged noisy sums; unchanged when the days are too few to expect one
    /// warning at the budget.
    package static func next(threshold: Double, warnings: Double, days: Double, settings: Settings) -> Double? {
        guard days * settings.budgetPer1kDays / 1_000 >= 1 else { return nil }
        let rate = max(warnings, 0.5) / days * 1_000
        let error = min(1, max(-1, log(rate / settings.budgetPer1kDays)))
        return min(settings.maximum, max(settings.minimum, threshold + settings.step * error))
    }
}
