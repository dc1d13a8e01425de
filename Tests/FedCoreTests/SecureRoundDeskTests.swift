@testable import FedIO
@testable import FedLogic
@testable import FedNode
import Foundation
import Testing

/// The aggregator's secure-aggregation desk driven by real agent clients, message by message: which
/// step closes when (everyone answered, or the step's deadline), what goes to whom, and what it refuses.
@Suite("Secure-aggregation desk: steps, deadlines, refusals")
struct SecureRoundDeskTests {
    static let agents = ["region-1", "region-2", "region-3", "region-4"]

    /// One agent as the session drives it.
    final class Agent: @unchecked Sendable {  // used from one test task only
        let id: String
        let identity = NodeIdentity()
        var participant: SecureParticipant?
        init(id: String) { self.id = id }
    }

    struct Harness {
        let desk: SecureRoundDesk
        let agents: [Agent]
        let opened = ContinuousClock.now
        let timeout = Duration.seconds(10)
        let dimension = 64

        init(threshold: Int = 3, round: UInt64 = 5) async {
            desk = SecureRoundDesk(enrolled: SecureRoundDeskTests.agents)
            agents = SecureRoundDeskTests.agents.map(Agent.init)
            for agent in agents {
                agent.participant = SecureParticipant(round: round, party: desk.parties[agent.id] ?? 0, threshold: threshold,
                                                      dimension: dimension, identity: agent.identity.signing)
            }
            await desk.start(round: round, threshold: threshold, dimension: dimension, expected: agents.count,
                             opened: opened, timeout: timeout)
        }

        func route(_ agent: Agent) -> ByteBlock { ByteBlock(copying: Array(agent.id.utf8)) }

        func send(_ body: SecureRoundDesk.Body, from agent: Agent) async -> String? {
            await desk.receive(body, from: agent.id, routingID: route(agent))
        }
    }

    @Test("Every agent answering closes each step at once; the unmasked sum is the plain sum")
    func honestRound() async throws {
        let h = await Harness()
        var inputs: [String: [UInt32]] = [:]
        for agent in h.agents {
            let keys = try #require(try agent.participant?.advertise())
            #expect(await h.send(.keys(keys, identity: agent.identity.signing.publicKey), from: agent) == nil)
        }
        var step = await h.desk.advance(now: h.opened)
        #expect(step.closed.map(\.stage) == [.keys])
        #expect(step.messages.count == 4)
        for (agentID, _, message) in step.messages {
            guard case .roster(let roster) = message, let agent = h.agents.first(where: { $0.id == agentID }) else {
                Issue.record("expected a roster")
                continue
            }
            let shares = try #require(try agent.participant?.share(roster))
            #expect(await h.send(.shares(shares), from: agent) == nil)
        }
        step = await h.desk.advance(now: h.opened)
        #expect(step.closed.map(\.stage) == [.sharing])
        for (agentID, _, message) in step.messages {
            guard case .shares(let forwarded) = message, let agent = h.agents.first(where: { $0.id == agentID }),
                  let participant = agent.participant else { continue }
            let plain = (0..<h.dimension).map { UInt32($0 * 7 + Int(participant.party)) }
            inputs[agentID] = plain
            let input = SecretWords(plain.map { $0 })
            let masked = try participant.mask(input, shares: forwarded.shares, users: 2, clipCount: 0.5)
            #expect(input.read { $0.allSatisfy { $0 == 0 } }, "the plain input was not wiped")
            #expect(masked.words != inputs[agentID])
            #expect(await h.send(.maskedInput(masked), from: agent) == nil)
        }
        step = await h.desk.advance(now: h.opened)
        #expect(step.closed.map(\.stage) == [.masking])
        for (agentID, _, message) in step.messages {
            guard case .survivors(let survivors) = message, let agent = h.agents.first(where: { $0.id == agentID }) else { continue }
            let signature = try #require(try agent.participant?.sign(survivors))
            #expect(await h.send(.signature(signature), from: agent) == nil)
        }
        step = await h.desk.advance(now: h.opened)
        #expect(step.closed.map(\.stage) == [.signing])
        var result: SecureRoundDesk.Result?
        for (agentID, _, message) in step.messages {
            guard case .unmask(let request) = message, let agent = h.agents.first(where: { $0.id == agentID }) else { continue }
            let response = try #require(try agent.participant?.unmask(request))
            let refusal = await h.send(.unmask(response), from: agent)
            #expect(refusal == nil, "a response after the sum (late) is dropped quietly, not refused")
            let next = await h.desk.advance(now: h.opened)
            if let ready = next.result { result = ready }
        }
        guard case .ready(_, let server, let contributors, let dropped, let users, let clipCount)? = result else {
            Issue.record("no sum")
            return
        }
        #expect(Set(contributors) == Set(Self.agents) && dropped == 0 && users == 8 && clipCount == 2)
        let sum = try server.sum()
        let expected = (0..<h.dimension).map { index in inputs.values.reduce(UInt32(0)) { $0 &+ $1[index] } }
        #expect(sum == expected)
    }

    @Test("A silent agent holds each step only until its deadline; keys from another identity or party are refused")
    func deadlinesAndRefusals() async throws {
        let h = await Harness(threshold: 2)
        let silent = h.agents[3]
        // A forged advertisement: right party, another identity key.
        let forger = NodeIdentity()
        let forged = SecureParticipant(round: 5, party: h.desk.parties[silent.id] ?? 0, threshold: 2, dimension: h.dimension,
                                       identity: forger.signing)
        #expect(await h.send(.keys(try forged.advertise(), identity: silent.identity.signing.publicKey), from: silent) != nil)
        // Another agent's party number.
        let other = SecureParticipant(round: 5, party: 1, threshold: 2, dimension: h.dimension, identity: silent.identity.signing)
        if h.desk.parties[silent.id] != 1 {
            #expect(await h.send(.keys(try other.advertise(), identity: silent.identity.signing.publicKey), from: silent) != nil)
        }
        for agent in h.agents.prefix(3) {
            let keys = try #require(try agent.participant?.advertise())
            #expect(await h.send(.keys(keys, identity: agent.identity.signing.publicKey), from: agent) == nil)
        }
        // Three of four: the step waits for the fourth until O + 0.15 T.
        #expect(await h.desk.advance(now: h.opened + .seconds(1)).closed.isEmpty)
        let closed = await h.desk.advance(now: h.opened + .milliseconds(1_501))
        #expect(closed.closed.map(\.stage) == [.keys] && closed.closed.first?.agents == 3)
        #expect(Set(closed.messages.map(\.0)) == Set(h.agents.prefix(3).map(\.id)), "the roster goes to its members only")
        // Keys after the roster closed are refused.
        #expect(await h.send(.keys(try silent.participant!.advertise(), identity: silent.identity.signing.publicKey),
                             from: silent) != nil)
        // Nobody shares: at O + 0.3 T the step closes with 0 < t and the protocol ends without a sum.
        let failed = await h.desk.advance(now: h.opened + .seconds(3) + .milliseconds(1))
        guard case .failed(5, let reason)? = failed.result else {
            Issue.record("expected a failed protocol, got \(String(describing: failed.result))")
            return
        }
        #expect(reason.contains("shares"), "\(reason)")
        #expect(await h.desk.stage == nil)
    }

    @Test("In a secure round the coordinator refuses plain updates and takes one aggregate for its survivors")
    func coordinatorSecureRound() async throws {
        let coordinator = RoundCoordinator(parameters: [0, 0, 0], round: 0, enrolled: ["a", "b", "c"], minAgents: 2,
                                           maxUpdateNorm: 10, averaging: FederatedAveraging(denominator: .fixed(4)))
        var h = RoundHyperparameters(samplingRate: 1, clipNorm: 1, noiseMultiplier: 1, learningRate: 1, localSteps: 1,
                                     sequenceLength: 5)
        (h.secureThreshold, h.secureBits) = (2, 16)
        _ = await coordinator.open(deadline: .now + .seconds(10)) { round, version in
            RoundPlan(round: round, modelVersion: version, deadlineMilliseconds: 0, minAgents: 2, hyperparameters: h)
        }
        await #expect(throws: UpdateRejection.secureRound) {
            try await coordinator.accept(ModelUpdate(agentID: "a", round: 1, deltaSum: [1, 0, 0], users: 0))
        }
        // One aggregate whose norm (12) is within the three agents' bounds together (30), not one agent's (10).
        try await coordinator.acceptAggregate(ModelUpdate(agentID: "secure-sum", round: 1, deltaSum: [12, 0, 0], users: 0),
                                              agents: ["a", "b", "c"])
        let outcome = await coordinator.close()
        #expect(outcome == .aggregated(round: 1, agents: ["a", "b", "c"]))
        #expect(await coordinator.parameters == [3, 0, 0], "Σ / q·expected users = 12 / 4")
    }

    @Test("The agent's floor applies to its own 1/t share too: t = 8 at z = 1 is refused at floor 0.5, t = 2 is not")
    func floorOnOwnShare() throws {
        let floor = PrivacyFloor(minNoiseMultiplier: 0.5, maxSamplingRate: 1)
        func plan(threshold: Int) throws -> RoundReleasePlan {
            RoundReleasePlan(samplingRate: 0.1, noiseMultiplier: 1, dimension: 1_000,
                             secure: try DistributedRelease(clipNorm: 1, noiseMultiplier: 1, threshold: threshold, bits: 16))
        }
        // The aggregate keeps z ≈ 1 either way; the share is 1/√8 ≈ 0.35 against 1/√2 ≈ 0.71.
        let refused = floor.refusal(of: try plan(threshold: 8))
        #expect(refused?.contains("own share") == true, "\(String(describing: refused))")
        #expect(floor.refusal(of: try plan(threshold: 2)) == nil)
    }

    @Test("The round driver closes a secure round when its sum is accepted, not before")
    func driverClosesOnAggregate() {
        var driver = RoundDriver(settings: .init(
            minAgents: 2, enrolledAgents: 3, timeoutMilliseconds: 10_000, maxRounds: 0,
            calibration: .init(budgetPer10k: 50), churnCalibration: .init(budgetPer1kDays: 5),
            initialThresholds: AlertThresholds(interestShift: 2, churnRisk: 5)), round: 0)
        #expect(driver.handle(.agentsChanged, liveAgents: 3, now: 0) == [.open(round: 1, deadlineMilliseconds: 10_000)])
        #expect(driver.handle(.aggregateAccepted(round: 2), liveAgents: 3, now: 1).isEmpty, "another round's sum")
        #expect(driver.handle(.aggregateAccepted(round: 1), liveAgents: 3, now: 1) == [.close(round: 1)])
        #expect(driver.handle(.deadlineReached(round: 1), liveAgents: 3, now: 2).isEmpty, "already closing")
    }
}
