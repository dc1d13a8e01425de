import Testing

@testable import FedLogic

/// Every transition of the agent's protocol state machine, without sockets, threads or clocks: each
/// row drives a fresh machine through `setup`, then checks the actions one more event produces.
@Suite("Agent protocol state machine")
struct AgentProtocolTests {
    /// Wall-clock milliseconds used by the rows; round deadlines are relative to it.
    private static let now: Int64 = 1_700_000_000_000

    private static func plan(_ round: UInt64, model: UInt64 = 3, deadlineIn: Int64 = 60_000) -> RoundPlan {
        RoundPlan(round: round, modelVersion: model, deadlineMilliseconds: now + deadlineIn, minAgents: 1,
                  hyperparameters: RoundHyperparameters(samplingRate: 0.1, clipNorm: 1, noiseMultiplier: 1,
                                                        learningRate: 0.5, localSteps: 1, sequenceLength: 20))
    }

    private static func work(_ round: UInt64, model: UInt64 = 3) -> RoundWork {
        RoundWork(submission: LocalUpdate(round: round, modelVersion: model, users: 0, values: [0.5, -0.25]),
                  evaluation: nil, sampledUsers: 4, clippedUsers: 1, meanLoss: 2.5, seconds: 0.1)
    }

    private static func snapshot(model: UInt64 = 3, open: RoundPlan? = nil, awaiting: Bool = false,
                                 thresholds: [Float] = []) -> AgentProtocol.Snapshot {
        .init(modelVersion: model, openRound: open, awaitingUpdate: awaiting, thresholds: thresholds)
    }

    private static func status(stopped: String? = nil, round: UInt64, model: UInt64 = 3) -> AgentProtocol.Status {
        .init(participating: stopped == nil, stoppedReason: stopped ?? "", lastRound: round, modelVersion: model)
    }

    /// A machine holding model v3 and registered.
    private static let ready: [AgentProtocol.Event] = [.modelLoaded(version: 3), .welcomed(snapshot())]
    /// Training round 5 on model v3.
    private static let training5 = ready + [.roundOpened(plan(5))]
    /// Round 5 trained and sent.
    private static let trained5 = training5 + [.trainingFinished(round: plan(5), .completed(work(5)))]
    /// The budget refused round 5's releases.
    private static let stopped = training5 + [.trainingFinished(round: plan(5), .budgetRefused(reason: "ε spent"))]

    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var setup: [AgentProtocol.Event]
        /// Milliseconds after ``AgentProtocolTests/now`` at which `event` arrives.
        var later: Int64 = 0
        var event: AgentProtocol.Event
        var expected: [AgentProtocol.Action]
        var testDescription: String { name }
    }

    static let rows: [Row] = [
        Row(name: "connected: say hello", setup: [], event: .connected, expected: [.sendHello]),
        Row(name: "a reconnect re-registers", setup: ready, event: .connected, expected: [.sendHello]),
        Row(name: "key refused: stop", setup: [], event: .authenticationFailed, expected: [.stopNotEnrolled]),
        Row(name: "disconnected: note it", setup: ready, event: .disconnected, expected: [.note(.lostAggregator)]),
        Row(name: "tick before registering: hello again", setup: [.connected], event: .tick, expected: [.sendHello]),
        Row(name: "tick when registered: heartbeat with the last round", setup: trained5, event: .tick,
            expected: [.sendHeartbeat(round: 5)]),
        Row(name: "welcome with another model: request it", setup: [], event: .welcomed(snapshot()),
            expected: [.note(.registered(round: nil, modelVersion: 3)), .requestModel(heldVersion: 0)]),
        Row(name: "welcome with the model held: nothing to fetch", setup: [.modelLoaded(version: 3)],
            event: .welcomed(snapshot()), expected: [.note(.registered(round: nil, modelVersion: 3))]),
        Row(name: "welcome with thresholds: apply them", setup: [.modelLoaded(version: 3)],
            event: .welcomed(snapshot(thresholds: [4.5])),
            expected: [.applyThresholds([4.5]), .note(.registered(round: nil, modelVersion: 3))]),
        Row(name: "welcome with a round awaiting us and its model: train", setup: [.modelLoaded(version: 3)],
            event: .welcomed(snapshot(open: plan(5), awaiting: true)),
            expected: [.note(.registered(round: 5, modelVersion: 3)), .startTraining(plan(5))]),
        Row(name: "welcome with a round awaiting us, model missing: request it first", setup: [],
            event: .welcomed(snapshot(open: plan(5), awaiting: true)),
            expected: [.note(.registered(round: 5, modelVersion: 3)), .requestModel(heldVersion: 0)]),
        Row(name: "welcome with a round not awaiting us: no training", setup: [.modelLoaded(version: 3)],
            event: .welcomed(snapshot(open: plan(5), awaiting: false)),
            expected: [.note(.registered(round: 5, modelVersion: 3))]),
        Row(name: "restarted aggregator still awaits a trained round: re-send the same work", setup: trained5,
            event: .welcomed(snapshot(open: plan(5), awaiting: true)),
            expected: [.note(.registered(round: 5, modelVersion: 3)), .note(.resending(round: 5)),
                       .resend(work(5), round: plan(5))]),
        Row(name: "awaited round trained on another model version: nothing re-sent", setup: trained5,
            event: .welcomed(snapshot(model: 4, open: plan(5, model: 4), awaiting: true)),
            expected: [.note(.registered(round: 5, modelVersion: 4))]),
        Row(name: "round open with its model: train", setup: ready, event: .roundOpened(plan(5)),
            expected: [.startTraining(plan(5))]),
        Row(name: "round open on a newer model: request the model", setup: ready,
            event: .roundOpened(plan(5, model: 4)), expected: [.requestModel(heldVersion: 3)]),
        Row(name: "a second request within 5 s is not sent", setup: ready + [.roundOpened(plan(5, model: 4))],
            later: 4_999, event: .roundOpened(plan(5, model: 4)), expected: []),
        Row(name: "the request is repeated after 5 s", setup: ready + [.roundOpened(plan(5, model: 4))],
            later: 5_000, event: .roundOpened(plan(5, model: 4)), expected: [.requestModel(heldVersion: 3)]),
        Row(name: "round past its deadline: skipped", setup: ready, event: .roundOpened(plan(5, deadlineIn: 0)),
            expected: [.note(.skippedPastDeadline(round: 5))]),
        Row(name: "a skipped round is not trained when announced again", setup: ready
            + [.roundOpened(plan(5, deadlineIn: 0))], event: .roundOpened(plan(5, deadlineIn: 60_000)), expected: []),
        Row(name: "round already handled and answered: ignored",
            setup: trained5 + [.verdict(round: 5, accepted: true, reason: "")], event: .roundOpened(plan(5)), expected: []),
        Row(name: "round handled, no verdict, re-announced: nothing (the verdict may be on its way)",
            setup: trained5, event: .roundOpened(plan(5)), expected: []),
        Row(name: "round handled, welcomed since without an open round, then announced (a restarted aggregator re-opened it): re-send",
            setup: trained5 + [.welcomed(.init(modelVersion: 3))], event: .roundOpened(plan(5)),
            expected: [.note(.resending(round: 5)), .resend(work(5), round: plan(5))]),
        Row(name: "accepted, then welcomed without an open round, then re-announced (the aggregator crashed before its checkpoint): re-send",
            setup: trained5 + [.verdict(round: 5, accepted: true, reason: ""), .welcomed(.init(modelVersion: 3))],
            event: .roundOpened(plan(5)), expected: [.note(.resending(round: 5)), .resend(work(5), round: plan(5))]),
        Row(name: "accepted, then welcomed with the round open and not awaiting us: not re-sent",
            setup: trained5 + [.verdict(round: 5, accepted: true, reason: ""),
                               .welcomed(snapshot(open: plan(5), awaiting: false))],
            event: .roundOpened(plan(5)), expected: []),
        Row(name: "a refusal is an answer too: not re-sent",
            setup: trained5 + [.verdict(round: 5, accepted: false, reason: "duplicate")], event: .roundOpened(plan(5)),
            expected: []),
        Row(name: "older round: ignored", setup: trained5, event: .roundOpened(plan(4)), expected: []),
        Row(name: "re-announcement of the round in training: nothing", setup: training5, event: .roundOpened(plan(5)),
            expected: []),
        Row(name: "newer round while training: waits", setup: training5, event: .roundOpened(plan(6)), expected: []),
        Row(name: "first of two chunks: wait for the rest", setup: ready,
            event: .modelChunk(.init(modelVersion: 4, index: 0, count: 2, bytes: [1, 2])), expected: []),
        Row(name: "last chunk: install the assembled file in index order", setup: ready
            + [.modelChunk(.init(modelVersion: 4, index: 1, count: 2, bytes: [3]))],
            event: .modelChunk(.init(modelVersion: 4, index: 0, count: 2, bytes: [1, 2])),
            expected: [.installModel(version: 4, file: [1, 2, 3])]),
        Row(name: "a chunk of a newer version drops the older partial file", setup: ready
            + [.modelChunk(.init(modelVersion: 4, index: 1, count: 2, bytes: [9]))],
            event: .modelChunk(.init(modelVersion: 5, index: 0, count: 2, bytes: [1])), expected: []),
        Row(name: "a chunk index outside its count: ignored", setup: ready,
            event: .modelChunk(.init(modelVersion: 4, index: 2, count: 2, bytes: [1])), expected: []),
        Row(name: "single-chunk model", setup: [],
            event: .modelChunk(.init(modelVersion: 1, index: 0, count: 1, bytes: [7])),
            expected: [.installModel(version: 1, file: [7])]),
        Row(name: "model installed with a round waiting for it: train", setup: ready
            + [.roundOpened(plan(5, model: 4))], event: .modelInstalled(version: 4),
            expected: [.startTraining(plan(5, model: 4))]),
        Row(name: "model installed while training: the waiting round stays pending", setup: training5
            + [.roundOpened(plan(6, model: 3))], event: .modelInstalled(version: 3), expected: []),
        Row(name: "model installed, nothing waiting", setup: ready, event: .modelInstalled(version: 4), expected: []),
        Row(name: "model refused: the next request goes out at once", setup: ready
            + [.roundOpened(plan(5, model: 4)), .modelRejected(version: 4)],
            event: .roundOpened(plan(5, model: 4)), expected: [.requestModel(heldVersion: 3)]),
        Row(name: "thresholds announced: apply", setup: ready, event: .thresholds([3.5]), expected: [.applyThresholds([3.5])]),
        Row(name: "empty thresholds: nothing", setup: ready, event: .thresholds([]), expected: []),
        Row(name: "the same thresholds re-announced: nothing", setup: ready + [.thresholds([3.5, 6])],
            event: .thresholds([3.5, 6]), expected: []),
        Row(name: "one threshold moved: apply both", setup: ready + [.thresholds([3.5, 6])],
            event: .thresholds([3.5, 6.5]), expected: [.applyThresholds([3.5, 6.5])]),
        Row(name: "training done: send, then status", setup: training5,
            event: .trainingFinished(round: plan(5), .completed(work(5))),
            expected: [.send(work(5), round: plan(5)), .writeStatus(status(round: 5))]),
        Row(name: "training done with a newer round waiting: send, status, train the next", setup: training5
            + [.roundOpened(plan(6))], event: .trainingFinished(round: plan(5), .completed(work(5))),
            expected: [.send(work(5), round: plan(5)), .writeStatus(status(round: 5)), .startTraining(plan(6))]),
        Row(name: "budget refused: training stops for good", setup: training5,
            event: .trainingFinished(round: plan(5), .budgetRefused(reason: "ε spent")),
            expected: [.note(.trainingStopped(round: 5, reason: "ε spent")),
                       .writeStatus(status(stopped: "ε spent", round: 5))]),
        Row(name: "after the budget stopped training, a new round is skipped", setup: stopped,
            event: .roundOpened(plan(6)), expected: [.note(.skippedTrainingStopped(round: 6, reason: "ε spent"))]),
        Row(name: "after the budget stopped training, a skipped round is not noted twice", setup: stopped
            + [.roundOpened(plan(6))], event: .roundOpened(plan(6)), expected: []),
        Row(name: "after the budget stopped training, no re-send either", setup: stopped,
            event: .welcomed(snapshot(open: plan(5), awaiting: true)),
            expected: [.note(.registered(round: 5, modelVersion: 3))]),
        Row(name: "deadline passed during training: noted, nothing sent", setup: training5,
            event: .trainingFinished(round: plan(5), .deadlinePassed(reason: "late")),
            expected: [.note(.workFailed(round: 5, reason: "late")), .writeStatus(status(round: 5))]),
        Row(name: "work failed: noted, the agent keeps participating", setup: training5,
            event: .trainingFinished(round: plan(5), .failed(reason: "disk")),
            expected: [.note(.workFailed(round: 5, reason: "disk")), .writeStatus(status(round: 5))]),
        Row(name: "a finish for a round not in training: ignored", setup: ready,
            event: .trainingFinished(round: plan(5), .completed(work(5))), expected: []),
        Row(name: "verdict accepted", setup: trained5, event: .verdict(round: 5, accepted: true, reason: ""),
            expected: [.note(.updateAccepted(round: 5))]),
        Row(name: "verdict refused", setup: trained5, event: .verdict(round: 5, accepted: false, reason: "late"),
            expected: [.note(.refused(round: 5, reason: "late"))]),
        Row(name: "model loaded from disk: no action", setup: [], event: .modelLoaded(version: 3), expected: []),
    ]

    @Test("Transition", arguments: rows)
    func transition(_ row: Row) {
        var machine = AgentProtocol()
        for event in row.setup { _ = machine.handle(event, now: Self.now) }
        #expect(machine.handle(row.event, now: Self.now + row.later) == row.expected)
    }

    @Test("The state after a round: handled, not working, work kept for a re-send")
    func stateAfterRound() {
        var machine = AgentProtocol()
        for event in Self.trained5 { _ = machine.handle(event, now: Self.now) }
        #expect(machine.handledRound == 5)
        #expect(machine.working == nil)
        #expect(machine.lastWork?.round == Self.plan(5))
        #expect(machine.lastWork?.work == Self.work(5))
        #expect(machine.status == Self.status(round: 5))
    }

    @Test("A round waiting for its model is trained once the model arrives, even after other rounds were announced")
    func pendingKeepsNewest() {
        var machine = AgentProtocol()
        for event in Self.ready { _ = machine.handle(event, now: Self.now) }
        _ = machine.handle(.roundOpened(Self.plan(5, model: 4)), now: Self.now)
        #expect(machine.pending == Self.plan(5, model: 4))
        _ = machine.handle(.roundOpened(Self.plan(6, model: 5)), now: Self.now + 6_000)
        #expect(machine.pending == Self.plan(6, model: 5))
        #expect(machine.handle(.modelInstalled(version: 5), now: Self.now + 7_000) == [.startTraining(Self.plan(6, model: 5))])
        #expect(machine.working == 6)
    }
}
