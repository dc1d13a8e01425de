@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Testing

@Suite("Rounds and federated averaging")
struct RoundTests {
    private let start: [Float] = [1, 2, 3, 4]

    private func coordinator(minAgents: Int = 2, denominator: FederatedAveraging.Denominator = .contributingUsers)
        -> RoundCoordinator
    {
        RoundCoordinator(parameters: start, round: 0, enrolled: ["a", "b", "c"], minAgents: minAgents,
                         maxUpdateNorm: 100, averaging: FederatedAveraging(denominator: denominator))
    }

    @Test("The new model is the start plus the user-weighted average of the agents' deltas")
    func weightedAverage() async throws {
        let rounds = coordinator()
        let round = await rounds.open(deadline: .now + .seconds(60))
        let a = ModelUpdate(agentID: "a", round: round, deltaSum: [3, 0, -3, 6], users: 3)
        let b = ModelUpdate(agentID: "b", round: round, deltaSum: [1, 1, 1, 1], users: 1)
        try await rounds.accept(a)
        try await rounds.accept(b)
        #expect(await rounds.close() == .aggregated(round: 1, agents: ["a", "b"]))
        // Independently: Σ deltaSum / Σ users = [4, 1, -2, 7] / 4.
        #expect(await rounds.parameters == [2, 2.25, 2.5, 5.75])
    }

    @Test("An insider cannot skew a round: one evaluation and one alert-rate release per agent, every count range-checked, no update with more users than all agents may sample")
    func insiderReportsAreBounded() async throws {
        let rounds = RoundCoordinator(parameters: start, round: 0, enrolled: ["a", "b", "c"], minAgents: 1,
                                      maxUpdateNorm: 100, averaging: FederatedAveraging(denominator: .contributingUsers),
                                      maxUsers: 10_000)
        let round = await rounds.open(deadline: .now + .seconds(60))
        func evaluation(users: Int, top10: Int, top1: Int, loss: Double = 10, round: UInt64 = 1) -> EvaluationRelease {
            EvaluationRelease(round: round, modelVersion: 0, users: users, top1Hits: top1, top10Hits: top10, lossSum: loss)
        }
        // Honest reports count (control).
        #expect(await rounds.record(evaluation(users: 100, top10: 30, top1: 10), from: "a") == nil)
        #expect(await rounds.record(evaluation(users: 50, top10: 20, top1: 5), from: "b") == nil)
        // A second report from the same agent, and reports no honest release can have, are refused with a reason.
        #expect(await rounds.record(evaluation(users: 100, top10: 100, top1: 100), from: "a")?.contains("second") == true)
        for lie in [evaluation(users: Int(UInt32.max), top10: 0, top1: 0), evaluation(users: -1, top10: 0, top1: 0),
                    evaluation(users: 10, top10: 11, top1: 0), evaluation(users: 10, top10: 5, top1: 6),
                    evaluation(users: 10, top10: 5, top1: 1, loss: .nan), evaluation(users: 10, top10: 5, top1: 1, loss: -1),
                    evaluation(users: 10, top10: 5, top1: 1, round: 7)] {
            #expect(await rounds.record(lie, from: "c") != nil, "\(lie)")
        }
        #expect(await rounds.record(evaluation(users: 10, top10: 5, top1: 1), from: "stranger")?.contains("enrolled") == true)
        // Alert-rate releases: one per agent, finite, bounded.
        #expect(await rounds.record(HistogramRelease(round: round, counts: [3, 900]), from: "a") == nil)
        #expect(await rounds.record(HistogramRelease(round: round, counts: [1, 100]), from: "a")?.contains("second") == true)
        for counts in [[1e308, 1e308], [.nan, 5], [1, 2, 3]] {
            #expect(await rounds.record(HistogramRelease(round: round, counts: counts), from: "b") != nil, "\(counts)")
        }
        // Updates: a user count beyond what all agents may sample in a round is refused.
        await #expect(throws: UpdateRejection.self) {
            try await rounds.accept(ModelUpdate(agentID: "c", round: round, deltaSum: [0, 0, 0, 0], users: Int(UInt32.max)))
        }
        try await rounds.accept(ModelUpdate(agentID: "a", round: round, deltaSum: [1, 1, 1, 1], users: 10))
        let (_, totals) = await rounds.closeWithEvaluation()
        #expect(totals.agents == 2 && totals.users == 150 && totals.top10Hits == 50 && totals.top1Hits == 15, "\(totals)")
        let merged = await rounds.closedAlertCounts
        #expect(merged?.alerts == 3 && merged?.events == 900, "\(String(describing: merged))")
    }

    @Test("With a fixed denominator the sum is divided by the expected user count, not the actual")
    func fixedDenominator() {
        let averaging = FederatedAveraging(denominator: .fixed(10))
        let updates = [ModelUpdate(agentID: "a", round: 1, deltaSum: [5, -5], users: 2)]
        #expect(averaging.averageDelta(updates, parameterCount: 2) == [0.5, -0.5])
    }

    @Test("Server momentum carries the previous round's direction into the next")
    func serverMomentum() {
        var averaging = FederatedAveraging(denominator: .contributingUsers,
                                           serverOptimizer: SGD(learningRate: 1, momentum: 0.5))
        var parameters: [Float] = [0]
        averaging.apply([ModelUpdate(agentID: "a", round: 1, deltaSum: [1], users: 1)], to: &parameters)
        averaging.apply([ModelUpdate(agentID: "a", round: 2, deltaSum: [0], users: 1)], to: &parameters)
        #expect(parameters == [1.5])  // 1, then 0 + 0.5·1
    }

    @Test("A private federation accepts an update only after that round's verified ledger receipt, whose entries move past those seen before")
    func receiptsGateUpdates() async throws {
        let rounds = RoundCoordinator(parameters: start, round: 0, enrolled: ["a", "b"], minAgents: 1, maxUpdateNorm: 100,
                                      averaging: FederatedAveraging(denominator: .contributingUsers), requireReceipts: true)
        let round = await rounds.open(deadline: .now + .seconds(60))
        let update = ModelUpdate(agentID: "a", round: round, deltaSum: [0, 0, 0, 0], users: 1)
        await #expect(throws: UpdateRejection.missingReceipt(agentID: "a")) { try await rounds.accept(update) }
        #expect(await rounds.recordReceipt(agentID: "a", round: round + 1, sequence: 3, head: "aa") == false, "not the open round")
        #expect(await rounds.recordReceipt(agentID: "a", round: round, sequence: 3, head: "aa"))
        // The same receipt re-sent in the same round (a reconnect) is taken as it was; another head at the
        // same position is not.
        #expect(await rounds.recordReceipt(agentID: "a", round: round, sequence: 3, head: "aa"))
        #expect(await rounds.recordReceipt(agentID: "a", round: round, sequence: 3, head: "ab") == false)
        try await rounds.accept(update)
        // The receipt of one agent does not admit another.
        await #expect(throws: UpdateRejection.missingReceipt(agentID: "b")) {
            try await rounds.accept(ModelUpdate(agentID: "b", round: round, deltaSum: [0, 0, 0, 0], users: 1))
        }
        await rounds.close()
        let next = await rounds.open(deadline: .now + .seconds(60))
        // A ledger that starts again (emptied, cut, replaced) cannot show entries past the head seen before.
        #expect(await rounds.recordReceipt(agentID: "a", round: next, sequence: 2, head: "bb") == false)
        #expect(await rounds.recordReceipt(agentID: "a", round: next, sequence: 3, head: "aa") == false,
                "last round's receipt is no receipt for this one")
        await #expect(throws: UpdateRejection.missingReceipt(agentID: "a")) {
            try await rounds.accept(ModelUpdate(agentID: "a", round: next, deltaSum: [0, 0, 0, 0], users: 1))
        }
        let saved = await rounds.agentRecords["a"]  // what checkpoints save (CheckpointStore's v4 columns)
        #expect(saved?.ledgerSequence == 3 && saved?.ledgerHead == "aa")
        // Control: without the requirement (NON-PRIVATE federations) updates need no receipt.
        let open = coordinator()
        let r = await open.open(deadline: .now + .seconds(60))
        try await open.accept(ModelUpdate(agentID: "a", round: r, deltaSum: [0, 0, 0, 0], users: 1))
    }

    @Test("Late, duplicate, unknown, wrongly sized, NaN and oversized updates are refused by reason")
    func rejections() async throws {
        let rounds = coordinator()
        let round = await rounds.open(deadline: .now + .seconds(60))
        try await rounds.accept(ModelUpdate(agentID: "a", round: round, deltaSum: [0, 0, 0, 0], users: 1))
        let cases: [(ModelUpdate, UpdateRejection)] = [
            (ModelUpdate(agentID: "b", round: round - 1, deltaSum: [0, 0, 0, 0], users: 1),
             .wrongRound(expected: round, found: round - 1)),
            (ModelUpdate(agentID: "a", round: round, deltaSum: [0, 0, 0, 0], users: 1), .duplicate(agentID: "a")),
            (ModelUpdate(agentID: "z", round: round, deltaSum: [0, 0, 0, 0], users: 1), .unknownAgent("z")),
            (ModelUpdate(agentID: "b", round: round, deltaSum: [0, 0], users: 1), .wrongSize(expected: 4, found: 2)),
            (ModelUpdate(agentID: "b", round: round, deltaSum: [0, .nan, 0, 0], users: 1), .nonFinite(index: 1)),
            (ModelUpdate(agentID: "b", round: round, deltaSum: [300, 0, 0, 400], users: 1),
             .normTooLarge(norm: 500, bound: 100)),
        ]
        for (update, expected) in cases {
            await #expect(throws: expected) { try await rounds.accept(update) }
        }
        #expect(await rounds.rejections == ["wrong_round": 1, "duplicate": 1, "unknown_agent": 1, "wrong_size": 1,
                                            "non_finite": 1, "norm_too_large": 1])
        // The round carries on: b can still submit.
        try await rounds.accept(ModelUpdate(agentID: "b", round: round, deltaSum: [1, 1, 1, 1], users: 1))
        #expect(await rounds.close() == .aggregated(round: round, agents: ["a", "b"]))
    }

    @Test("Without quorum by the deadline the round fails and the model is unchanged")
    func quorum() async throws {
        let rounds = coordinator(minAgents: 2)
        let deadline = ContinuousClock.now + .milliseconds(50)
        let round = await rounds.open(deadline: deadline)
        try await rounds.accept(ModelUpdate(agentID: "c", round: round, deltaSum: [9, 9, 9, 9], users: 1))
        #expect(await !rounds.isReadyToClose(now: deadline - .milliseconds(1)))
        #expect(await rounds.isReadyToClose(now: deadline))
        #expect(await rounds.close() == .failedQuorum(round: round, received: 1, required: 2))
        #expect(await rounds.parameters == start)
        // A straggler's update for the failed round is refused once the next round is open.
        let next = await rounds.open(deadline: .now + .seconds(60))
        await #expect(throws: UpdateRejection.wrongRound(expected: next, found: round)) {
            try await rounds.accept(ModelUpdate(agentID: "a", round: round, deltaSum: [0, 0, 0, 0], users: 1))
        }
    }

    @Test("A round can close early once every enrolled agent has answered")
    func closesWhenAllAnswered() async throws {
        let rounds = coordinator(minAgents: 1)
        let round = await rounds.open(deadline: .now + .seconds(3600))
        for agent in ["a", "b", "c"] {
            #expect(await !rounds.isReadyToClose(now: .now))
            try await rounds.accept(ModelUpdate(agentID: agent, round: round, deltaSum: [0, 0, 0, 0], users: 1))
        }
        #expect(await rounds.isReadyToClose(now: .now))
    }
}
