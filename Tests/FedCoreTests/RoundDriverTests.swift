import Foundation
import Testing

@testable import FedLogic

/// Every transition of the aggregator's round driver, without sockets, timers or clocks: each row
/// drives a fresh driver (3 enrolled agents, quorum 2, 10 s rounds, 3 rounds at most) through
/// `setup`, then checks the actions one more event produces.
@Suite("Round driver state machine")
struct RoundDriverTests {
    private static let now: Int64 = 1_700_000_000_000
    private static let settings = RoundDriver.Settings(
        minAgents: 2, enrolledAgents: 3, timeoutMilliseconds: 10_000, maxRounds: 3,
        calibration: AlertRateCalibration.Settings(budgetPer10k: 50),
        churnCalibration: ChurnRateCalibration.Settings(budgetPer1kDays: 5),
        initialThresholds: AlertThresholds(interestShift: 2, churnRisk: 5))
    private static let initial = settings.initialThresholds
    private static let churnStep = settings.churnCalibration.step

    /// Merged releases: `alerts` alerts over `events` events, `warnings` churn warnings over `days`.
    private static func counts(alerts: Double, events: Double, warnings: Double = 0,
                               days: Double = 0) -> AlertRateCalibration.Counts {
        AlertRateCalibration.Counts(alerts: alerts, events: events, churnWarnings: warnings, shopperDays: days)
    }

    private static func thresholds(_ shift: Double, _ churn: Double) -> AlertThresholds {
        AlertThresholds(interestShift: shift, churnRisk: churn)
    }

    /// A setup step: an event and the live agent count the service observed with it.
    struct Step: Sendable {
        var event: RoundDriver.Event
        var live: Int
    }

    private static let open1: [Step] = [Step(event: .agentsChanged, live: 3)]
    private static let closing1 = open1 + [Step(event: .deadlineReached(round: 1), live: 3)]
    private static let closed1 = closing1 + [Step(event: .closed(round: 1, aggregated: true, alerts: nil), live: 3)]

    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var setup: [Step]
        var event: RoundDriver.Event
        var live: Int
        var expected: [RoundDriver.Action]
        var testDescription: String { name }
    }

    static let rows: [Row] = [
        Row(name: "start below quorum: wait, and say so", setup: [], event: .agentsChanged, live: 1,
            expected: [.waitForAgents(live: 1, quorum: 2)]),
        Row(name: "still below quorum: no second message", setup: [Step(event: .agentsChanged, live: 0)],
            event: .agentsChanged, live: 1, expected: []),
        Row(name: "quorum reached: open round 1 with its deadline", setup: [Step(event: .agentsChanged, live: 1)],
            event: .agentsChanged, live: 2, expected: [.open(round: 1, deadlineMilliseconds: now + 10_000)]),
        Row(name: "start with a quorum: open at once", setup: [], event: .agentsChanged, live: 3,
            expected: [.open(round: 1, deadlineMilliseconds: now + 10_000)]),
        Row(name: "more agents while collecting: nothing", setup: open1, event: .agentsChanged, live: 3, expected: []),
        Row(name: "an update before every agent answered: keep collecting", setup: open1,
            event: .updateAccepted(round: 1, received: 2), live: 3, expected: []),
        Row(name: "every enrolled agent answered: close early", setup: open1,
            event: .updateAccepted(round: 1, received: 3), live: 3, expected: [.close(round: 1)]),
        Row(name: "an update count for another round: ignored", setup: open1,
            event: .updateAccepted(round: 7, received: 3), live: 3, expected: []),
        Row(name: "deadline: close", setup: open1, event: .deadlineReached(round: 1), live: 3,
            expected: [.close(round: 1)]),
        Row(name: "a stale deadline timer of another round: ignored", setup: open1,
            event: .deadlineReached(round: 0), live: 3, expected: []),
        Row(name: "deadline after an early close: ignored", setup: closing1, event: .deadlineReached(round: 1),
            live: 3, expected: []),
        Row(name: "closed, quorum still live: checkpoint, report, open the next round", setup: closing1,
            event: .closed(round: 1, aggregated: true, alerts: nil), live: 3,
            expected: [.checkpoint(round: 1, thresholds: initial), .report(round: 1), .open(round: 2, deadlineMilliseconds: now + 10_000)]),
        Row(name: "closed after a failed quorum: checkpoint and report all the same", setup: closing1,
            event: .closed(round: 1, aggregated: false, alerts: nil), live: 3,
            expected: [.checkpoint(round: 1, thresholds: initial), .report(round: 1), .open(round: 2, deadlineMilliseconds: now + 10_000)]),
        Row(name: "closed with agents gone: wait for them", setup: closing1,
            event: .closed(round: 1, aggregated: true, alerts: nil), live: 1,
            expected: [.checkpoint(round: 1, thresholds: initial), .report(round: 1), .waitForAgents(live: 1, quorum: 2)]),
        Row(name: "closed with alerts at e times the budget: the threshold rises one step, before the report",
            setup: closing1, event: .closed(round: 1, aggregated: true, alerts: counts(alerts: 50 * exp(1), events: 10_000)),
            live: 3, expected: [.checkpoint(round: 1, thresholds: thresholds(3, 5)),
                                .announceThresholds(thresholds(3, 5), estimate: counts(alerts: 50 * exp(1), events: 10_000)),
                                .report(round: 1), .open(round: 2, deadlineMilliseconds: now + 10_000)]),
        Row(name: "closed with no alerts: the threshold falls one step", setup: closing1,
            event: .closed(round: 1, aggregated: true, alerts: counts(alerts: -3, events: 100_000)), live: 3,
            expected: [.checkpoint(round: 1, thresholds: thresholds(1, 5)),
                       .announceThresholds(thresholds(1, 5), estimate: counts(alerts: -3, events: 100_000)),
                       .report(round: 1), .open(round: 2, deadlineMilliseconds: now + 10_000)]),
        Row(name: "closed with too few events to expect one alert: the threshold stays", setup: closing1,
            event: .closed(round: 1, aggregated: true, alerts: counts(alerts: 5, events: 199)), live: 3,
            expected: [.checkpoint(round: 1, thresholds: initial), .report(round: 1), .open(round: 2, deadlineMilliseconds: now + 10_000)]),
        Row(name: "churn warnings at e times their budget: the churn threshold rises one step, the other stays",
            setup: closing1, event: .closed(round: 1, aggregated: true,
                                            alerts: counts(alerts: 5, events: 199, warnings: 5 * exp(1), days: 1_000)),
            live: 3, expected: [.checkpoint(round: 1, thresholds: thresholds(2, 5 + churnStep)),
                                .announceThresholds(thresholds(2, 5 + churnStep), estimate: counts(alerts: 5, events: 199,
                                                                                      warnings: 5 * exp(1), days: 1_000)),
                                .report(round: 1), .open(round: 2, deadlineMilliseconds: now + 10_000)]),
        Row(name: "a close for a round not closing: ignored", setup: open1,
            event: .closed(round: 1, aggregated: true, alerts: nil), live: 3, expected: []),
        Row(name: "after waiting, an agent back: open the next round", setup: closing1
            + [Step(event: .closed(round: 1, aggregated: true, alerts: nil), live: 1)],
            event: .agentsChanged, live: 2, expected: [.open(round: 2, deadlineMilliseconds: now + 10_000)]),
        Row(name: "the last of max_rounds: finish", setup: closed1 + [
                Step(event: .deadlineReached(round: 2), live: 3),
                Step(event: .closed(round: 2, aggregated: true, alerts: nil), live: 3),
                Step(event: .deadlineReached(round: 3), live: 3),
            ], event: .closed(round: 3, aggregated: true, alerts: nil), live: 3,
            expected: [.checkpoint(round: 3, thresholds: initial), .report(round: 3), .finish]),
    ]

    @Test("Transition", arguments: rows)
    func transition(_ row: Row) {
        var driver = RoundDriver(settings: Self.settings, round: 0)
        for step in row.setup { _ = driver.handle(step.event, liveAgents: step.live, now: Self.now) }
        #expect(driver.handle(row.event, liveAgents: row.live, now: Self.now) == row.expected)
    }

    @Test("A resumed federation continues at the checkpoint's next round, with its thresholds")
    func resume() {
        var driver = RoundDriver(settings: Self.settings, round: 41, thresholds: Self.thresholds(-1.5, 7))
        #expect(driver.handle(.agentsChanged, liveAgents: 3, now: Self.now)
            == [.open(round: 42, deadlineMilliseconds: Self.now + 10_000)])
        _ = driver.handle(.deadlineReached(round: 42), liveAgents: 3, now: Self.now)
        #expect(driver.handle(.closed(round: 42, aggregated: true, alerts: nil), liveAgents: 3, now: Self.now).first
            == .checkpoint(round: 42, thresholds: Self.thresholds(-1.5, 7)))
    }

    @Test("After finishing, nothing opens again")
    func finished() {
        var settings = Self.settings
        settings.maxRounds = 1
        var driver = RoundDriver(settings: settings, round: 0)
        _ = driver.handle(.agentsChanged, liveAgents: 3, now: Self.now)
        _ = driver.handle(.deadlineReached(round: 1), liveAgents: 3, now: Self.now)
        #expect(driver.handle(.closed(round: 1, aggregated: true, alerts: nil), liveAgents: 3, now: Self.now)
            == [.checkpoint(round: 1, thresholds: Self.initial), .report(round: 1), .finish])
        #expect(driver.phase == .finished)
        #expect(driver.handle(.agentsChanged, liveAgents: 3, now: Self.now).isEmpty)
    }

    @Test("At the budget the threshold stays; the step is proportional to the log rate error, within ±1")
    func calibrationSteps() {
        func next(after alerts: Double, events: Double, from threshold: Double) -> Double {
            var driver = RoundDriver(settings: Self.settings, round: 0, thresholds: Self.thresholds(threshold, 5))
            _ = driver.handle(.agentsChanged, liveAgents: 3, now: Self.now)
            _ = driver.handle(.deadlineReached(round: 1), liveAgents: 3, now: Self.now)
            _ = driver.handle(.closed(round: 1, aggregated: true, alerts: Self.counts(alerts: alerts, events: events)),
                              liveAgents: 3, now: Self.now)
            return driver.thresholds.interestShift
        }
        #expect(next(after: 50, events: 10_000, from: 4) == 4)
        #expect(abs(next(after: 50 * exp(0.3), events: 10_000, from: 4) - 4.3) < 1e-12)
        #expect(abs(next(after: 50 * exp(-0.3), events: 10_000, from: 4) - 3.7) < 1e-12)
        #expect(next(after: 50_000, events: 10_000, from: 4) == 5)
    }

    @Test("Paced (a regional aggregator): rounds open only when the global round asks, with its deadline; a request below quorum waits for the agents until that deadline; nothing opens by itself after a close; a request while a round is open or past its deadline is declined")
    func paced() {
        var settings = Self.settings
        settings.paced = true
        let due = Self.now + 7_000
        var driver = RoundDriver(settings: settings, round: 0)
        #expect(driver.handle(.agentsChanged, liveAgents: 3, now: Self.now).isEmpty, "agents alone open nothing")
        #expect(driver.handle(.upstreamRound(deadlineMilliseconds: due), liveAgents: 3, now: Self.now)
            == [.open(round: 1, deadlineMilliseconds: due)])
        #expect(driver.handle(.upstreamRound(deadlineMilliseconds: due), liveAgents: 3, now: Self.now)
            == [.declineUpstream(reason: "a regional round is still open")])
        _ = driver.handle(.deadlineReached(round: 1), liveAgents: 3, now: Self.now)
        #expect(driver.handle(.closed(round: 1, aggregated: true, alerts: nil), liveAgents: 3, now: Self.now)
            == [.checkpoint(round: 1, thresholds: Self.initial), .report(round: 1)], "no round opens by itself")
        #expect(driver.handle(.agentsChanged, liveAgents: 3, now: Self.now).isEmpty)
        // Below quorum: wait; the round opens when the agents come, with the global round's deadline.
        #expect(driver.handle(.upstreamRound(deadlineMilliseconds: due), liveAgents: 1, now: Self.now)
            == [.waitForAgents(live: 1, quorum: 2)])
        #expect(driver.handle(.agentsChanged, liveAgents: 1, now: Self.now).isEmpty)
        #expect(driver.handle(.agentsChanged, liveAgents: 2, now: Self.now + 1_000)
            == [.open(round: 2, deadlineMilliseconds: due)])
        _ = driver.handle(.deadlineReached(round: 2), liveAgents: 2, now: due)
        _ = driver.handle(.closed(round: 2, aggregated: false, alerts: nil), liveAgents: 2, now: due)
        // Agents that come after the global deadline open nothing; a request already past it is declined.
        #expect(driver.handle(.upstreamRound(deadlineMilliseconds: due + 5_000), liveAgents: 0, now: due)
            == [.waitForAgents(live: 0, quorum: 2)])
        #expect(driver.handle(.agentsChanged, liveAgents: 3, now: due + 6_000)
            == [.declineUpstream(reason: "the global round's deadline has passed")])
        #expect(driver.handle(.upstreamRound(deadlineMilliseconds: due), liveAgents: 3, now: due + 6_000)
            == [.declineUpstream(reason: "the global round's deadline has passed")])
        // Control: the same events on an unpaced driver open rounds by themselves.
        var unpaced = RoundDriver(settings: Self.settings, round: 0)
        #expect(unpaced.handle(.agentsChanged, liveAgents: 3, now: Self.now)
            == [.open(round: 1, deadlineMilliseconds: Self.now + 10_000)])
    }
}
