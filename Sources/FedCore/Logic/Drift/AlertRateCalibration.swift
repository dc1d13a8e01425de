import Foundation

/// The alert rule shared by live scoring and the evaluation: an alarm when a user's statistic first
/// reaches the threshold after `warmUp` events; then `coolDown` events of silence, and the next alarm
/// only after the statistic fell below the threshold again.
package struct AlertRule: Sendable, Equatable {
    package var warmUp: Int
    package var coolDown: Int

    package init(warmUp: Int = 10, coolDown: Int = 30) {
        (self.warmUp, self.coolDown) = (warmUp, coolDown)
    }

    /// One user's place in the rule.
    package struct State: Sendable, Equatable {
        package var events = 0
        var armed = true
        var coolUntil = -1
        package init() {}
    }

    /// Takes the user's statistic after their next event; returns whether it raises an alarm.
    package func observe(_ value: Double, threshold: Double, state: inout State) -> Bool {
        let index = state.events
        state.events += 1
        if !state.armed, index > state.coolUntil, value < threshold { state.armed = true }
        guard state.armed, value >= threshold, index >= warmUp else { return false }
        state.armed = false
        state.coolUntil = index + coolDown
        return true
    }

    /// Indices of the alarms in one user's statistic series at `threshold`.
    package func alarms(_ statistic: some Collection<Double>, threshold: Double) -> [Int] {
        var state = State()
        return statistic.enumerated().compactMap { index, value in
            observe(value, threshold: threshold, state: &state) ? index : nil
        }
    }
}

/// The federated alert threshold, calibrated to the operator's budget in **alerts per 10,000 scored
/// events** without seeing any user's scores (the quantile tracking of adaptive clipping, Andrew et al.
/// 2021, applied to the alert rate).
///
/// Each round, every agent replays its Poisson-sampled users' stored events through the detector and
/// counts, at the threshold in force, the alerts the rule would raise in each user's last
/// ``Settings/eventWindow`` events. It releases two sums with Gaussian noise: alerts (each user's count
/// clipped to ``Settings/alertClip``) and events (each user's clipped to the window). The aggregator
/// adds the agents' releases and moves the threshold (a log-odds score) by a bounded step toward the
/// budget: θ ← θ + η·clamp(log(rate / budget), −1, 1). Noisy sums are used unclamped, so no estimator
/// bias is introduced; the step's noise averages out over rounds. The same release carries the churn
/// threshold's what-if sums (``ChurnRateCalibration``). The released vector (alerts / alertClip,
/// events / eventWindow, warnings / warningClip, days / windowDays) has L2 sensitivity 2 per user, so a
/// release with noise multiplier z on each coordinate costs what a Gaussian mechanism with multiplier
/// z / 2 costs (``accountedNoiseMultiplier(_:)``), subsampled at the round's rate.
package enum AlertRateCalibration {
    /// Most recent events per user the what-if counts replay — and live scoring replays when it starts,
    /// so that both see a user's statistic with the same history behind it (a shorter replay leaves
    /// smaller explorer offsets, and measured, nearly twice the alerts the what-if predicts).
    package static let historyEvents = 500

    package struct Settings: Sendable, Equatable {
        /// The operator's budget: alerts per 10,000 scored events.
        package var budgetPer10k: Double
        /// Per-user clip of the released alert count. 4: with a 30-event cool-down a shopper raises few
        /// alerts in the counted half of their history, and the noise of the sum is z × clip (with 8,
        /// a budget of 10/10k was met within ×1.5 in 43 of 50 seeds at 3 × 1,000 shoppers; with 4, 50).
        package var alertClip = 4
        /// Events per user counted (the most recent); also the clip of the released event count.
        package var eventWindow = AlertRateCalibration.historyEvents
        /// Step size η of the update, in score units per unit of log rate error (clamped to ±1).
        package var step = 1.0
        /// The threshold stays within these bounds (the detector's statistic, S − offset, is negative for
        /// most shoppers most of the time).
        package var minimum = -100.0, maximum = 100.0

        package init(budgetPer10k: Double) { self.budgetPer10k = budgetPer10k }
    }

    /// One agent's (or the merged) release: noisy sums of clipped alert and event counts, and of the
    /// churn-risk what-if (``ChurnRateCalibration``): warnings and shopper-days.
    package struct Counts: Sendable, Equatable {
        package var alerts: Double
        package var events: Double
        package var churnWarnings: Double
        package var shopperDays: Double

        package init(alerts: Double, events: Double, churnWarnings: Double = 0, shopperDays: Double = 0) {
            (self.alerts, self.events) = (alerts, events)
            (self.churnWarnings, self.shopperDays) = (churnWarnings, shopperDays)
        }

        package static let zero = Counts(alerts: 0, events: 0)

        package static func + (lhs: Counts, rhs: Counts) -> Counts {
            Counts(alerts: lhs.alerts + rhs.alerts, events: lhs.events + rhs.events,
                   churnWarnings: lhs.churnWarnings + rhs.churnWarnings, shopperDays: lhs.shopperDays + rhs.shopperDays)
        }

        /// The released vector: (alerts, events, churn warnings, shopper-days).
        package var values: [Double] { [alerts, events, churnWarnings, shopperDays] }

        /// From a released vector of 2 (no churn part) or 4 values; nil for any other length or a
        /// value that is not finite.
        package init?(values: [Double]) {
            guard values.count == 2 || values.count == 4, values.allSatisfy(\.isFinite) else { return nil }
            self.init(alerts: values[0], events: values[1], churnWarnings: values.count == 4 ? values[2] : 0,
                      shopperDays: values.count == 4 ? values[3] : 0)
        }
    }

    /// The exact counts for one user: alerts at `threshold` and events in the latter half of their
    /// statistic series (at most the last `eventWindow` events), clipped. The series covers the user's
    /// replayed history; only its latter half is counted because live scoring sees users whose detector
    /// state is mature — counted from a user's first event, the what-if rate ran below the live one.
    package static func userCounts(_ statistic: [Double], threshold: Double, rule: AlertRule,
                                   settings: Settings) -> Counts {
        let first = max(statistic.count / 2, statistic.count - settings.eventWindow)
        let alerts = rule.alarms(statistic, threshold: threshold).filter { $0 >= first }.count
        return Counts(alerts: Double(min(alerts, settings.alertClip)), events: Double(statistic.count - first))
    }

    /// An agent's release over its sampled users' exact counts: each sum plus N(0, (z·clip)²), snapped.
    package static func release<G: RandomNumberGenerator>(_ users: [Counts], settings: Settings,
                                                          churn: ChurnRateCalibration.Settings,
                                                          noiseMultiplier z: Double, random: inout G) -> Counts {
        let exact = users.reduce(Counts.zero, +)
        guard z > 0 else { return exact }
        // Each sum over its per-user clip, quantised, with exact discrete Gaussian noise (``QuantisedRelease``).
        let noised = QuantisedRelease.noisedSums(
            [exact.alerts, exact.events, exact.churnWarnings, exact.shopperDays],
            scales: [Double(settings.alertClip), Double(settings.eventWindow), Double(churn.warningClip), churn.windowDays],
            noiseMultiplier: z, random: &random)
        return Counts(alerts: noised[0], events: noised[1], churnWarnings: noised[2], shopperDays: noised[3])
    }

    /// Coordinates of the release: alerts, events, churn warnings, shopper-days.
    package static let releasedCoordinates = 4

    /// The noise multiplier the accountant charges for a release with multiplier `z` on each of the
    /// four sums: each is clipped per user, so the vector of sums / clips has L2 sensitivity √4 = 2,
    /// and the release costs what a Gaussian mechanism with multiplier z / 2 costs.
    package static func accountedNoiseMultiplier(_ z: Double) -> Double {
        z / Double(releasedCoordinates).squareRoot()
    }

    /// The next threshold from the merged releases of a round; unchanged when the events are too few
    /// to say anything (fewer than 10,000 / budget, i.e. under one expected alert).
    package static func next(threshold: Double, merged: Counts, settings: Settings) -> Double {
        guard merged.events * settings.budgetPer10k / 10_000 >= 1 else { return threshold }
        let rate = max(merged.alerts, 0.5) / merged.events * 10_000
        let error = min(1, max(-1, log(rate / settings.budgetPer10k)))
        return min(settings.maximum, max(settings.minimum, threshold + settings.step * error))
    }
}

/// The thresholds the federation broadcasts, in the detectors' units: the interest-shift statistic
/// (S − offset) and the churn risk (nats). On the wire: `[interestShift, churnRisk]`.
package struct AlertThresholds: Sendable, Equatable {
    package var interestShift: Double
    package var churnRisk: Double

    package init(interestShift: Double, churnRisk: Double) {
        (self.interestShift, self.churnRisk) = (interestShift, churnRisk)
    }

    package var values: [Double] { [interestShift, churnRisk] }

    /// From `[interestShift, churnRisk]`; a single value (an aggregator without churn calibration)
    /// leaves churn at `churnDefault`. Nil when empty or not finite.
    package init?(values: [Double], churnDefault: Double) {
        guard let first = values.first, values.allSatisfy(\.isFinite) else { return nil }
        self.init(interestShift: first, churnRisk: values.count > 1 ? values[1] : churnDefault)
    }
}
