package import FedIO
import Foundation

/// The aggregator's side of a round's secure aggregation: it runs one ``SecureAggregationServer`` per
/// round, maps enrolled agents to party numbers, closes each step when every party expected has
/// answered or the step's deadline passed, and says what to send to whom. It never holds an agent's
/// update, only masked vectors; the unmasked sum is computed off the actor (``SecureRoundDesk/Result``).
///
/// Step deadlines, for a round of timeout T opened at O with deadline D = O + T and grace
/// g = clamp(T/10, 1 s, 5 s): keys by O + 0.15·T, shares by O + 0.3·T, masked inputs by D + g/2 (the
/// agents release theirs at their training cutoff, before D; masking takes a moment), signatures by
/// D + g, unmask responses by D + 2g.
package actor SecureRoundDesk {
    /// A message for one agent.
    package enum Outgoing: Sendable {
        case roster(SecureRosterMessage)
        case shares(SecureForwardedSharesMessage)
        case survivors(SecureSurvivorsMessage)
        case unmask(SecureUnmaskRequestMessage)
    }

    /// How a round's secure aggregation ended.
    package enum Result: Sendable {
        /// Enough agents answered every step: the sum can be unmasked from this server state (off the
        /// actor: it expands one mask stream per survivor and per dropped party).
        /// `dropped`: agents that shared keys but sent no masked update (their masks are removed from shares).
        case ready(round: UInt64, server: SecureAggregationServer, agents: [String], dropped: Int, users: Int,
                   clipCount: Double)
        /// Too few agents at some step: nothing can be unmasked; the round fails its quorum.
        case failed(round: UInt64, reason: String)
    }

    package enum Stage: String, Sendable { case keys, sharing, masking, signing, unmasking, done }

    private struct Open {
        var round: UInt64
        var server: SecureAggregationServer
        var stage = Stage.keys
        var expected: Int
        var deadlines: [Stage: ContinuousClock.Instant]
        var roster: Set<UInt64> = []
        var sharers: Set<UInt64> = []
        var survivors: [UInt64] = []
        var signers: Set<UInt64> = []
        var responders: Set<UInt64> = []
        var keysFrom: Set<UInt64> = []
        var sharesFrom: Set<UInt64> = []
        var inputs: [UInt64: (users: Int, clipCount: Double)] = [:]
    }

    /// Enrolled agent ↔ party number (1 + its index among the sorted agent ids; also in its welcome).
    package nonisolated let parties: [String: UInt64]
    private let agents: [UInt64: String]
    private var open: Open?
    /// The round whose protocol ended last: its late messages (the responses beyond the t that unmasked
    /// the sum) are dropped quietly.
    private var ended: UInt64?
    /// Where each agent was last heard (replies go there).
    private var routes: [String: ByteBlock] = [:]

    /// Records the connection an authenticated message from `agentID` came on (an agent that
    /// reconnected mid-round gets the next steps there).
    package func heard(_ agentID: String, on routingID: ByteBlock) { routes[agentID] = routingID }

    /// Whether the open round's protocol has ended with a sum that is being unmasked.
    package private(set) var unmasking = false
    package func setUnmasking(_ value: Bool) { unmasking = value }

    package init(enrolled: [String]) {
        var parties: [String: UInt64] = [:]
        for (index, agent) in enrolled.sorted().enumerated() { parties[agent] = UInt64(index + 1) }
        self.parties = parties
        agents = Dictionary(uniqueKeysWithValues: parties.map { ($0.value, $0.key) })
    }

    package nonisolated static func grace(timeout: Duration) -> Duration {
        min(.seconds(5), max(.seconds(1), timeout / 10))
    }

    /// Opens round `round`'s secure aggregation: `expected` agents are live and should advertise keys.
    package func start(round: UInt64, threshold: Int, dimension: Int, expected: Int,
                       opened: ContinuousClock.Instant, timeout: Duration) {
        let grace = Self.grace(timeout: timeout), deadline = opened + timeout
        open = Open(round: round, server: SecureAggregationServer(round: round, threshold: threshold, dimension: dimension),
                    expected: max(expected, threshold),
                    deadlines: [.keys: opened + timeout * 0.15, .sharing: opened + timeout * 0.3,
                                .masking: deadline + grace / 2,
                                .signing: deadline + grace, .unmasking: deadline + grace * 2])
    }

    /// The open round's stage (for logs and tests).
    package var stage: Stage? { open?.stage }

    /// Takes one step message from `agentID` (authenticated by the gate, its receipt checked by the
    /// caller for masked inputs). Returns the refusal in words when the step refused it.
    package func receive(_ body: Body, from agentID: String, routingID: ByteBlock) -> String? {
        routes[agentID] = routingID
        if body.round == ended, open?.round != body.round { return nil }
        guard var state = open else { return "no secure aggregation is running" }
        guard let party = parties[agentID] else { return "not enrolled" }
        guard body.round == state.round else { return "round \(body.round) is not the open secure round \(state.round)" }
        defer { open = state }
        do throws(SecureAggregation.Failure) {
            switch body {
            case .keys(let message, let identity):
                guard message.keys.party == party else { return "keys name party \(message.keys.party), this agent is \(party)" }
                guard message.keys.identity == identity else { return "keys signed by a key other than the agent's identity" }
                try state.server.receive(keys: message.keys)
                state.keysFrom.insert(party)
            case .shares(let message):
                try state.server.receive(shares: message.shares, from: party)
                state.sharesFrom.insert(party)
            case .maskedInput(let message):
                guard message.party == party else { return "masked input names party \(message.party)" }
                try state.server.receive(maskedInput: message.words, from: party)
                state.inputs[party] = (Int(message.users), message.clipCount)
            case .signature(let message):
                guard message.party == party else { return "signature names party \(message.party)" }
                try state.server.receive(signature: message.signature, from: party)
                state.signers.insert(party)
            case .unmask(let message):
                guard message.response.party == party else { return "response names party \(message.response.party)" }
                try state.server.receive(response: message.response)
                state.responders.insert(party)
            }
        } catch {
            return error.description
        }
        return nil
    }

    /// A step message, decoded by the gate. `identity` is the sender's enrolled signing key.
    package enum Body: Sendable {
        case keys(SecureKeysMessage, identity: SigningPublicKey)
        case shares(SecureSharesMessage)
        case maskedInput(SecureMaskedInputMessage)
        case signature(SecureSignatureMessage)
        case unmask(SecureUnmaskResponseMessage)

        var round: UInt64 {
            switch self {
            case .keys(let m, _): m.round
            case .shares(let m): m.round
            case .maskedInput(let m): m.round
            case .signature(let m): m.round
            case .unmask(let m): m.round
            }
        }
    }

    /// Closes every step that is complete or past its deadline at `now`. Returns the messages to send
    /// (agent id, where it was last heard, message) and, once the protocol ended, its result.
    package func advance(now: ContinuousClock.Instant)
        -> (messages: [(String, ByteBlock, Outgoing)], closed: [(stage: Stage, agents: Int)], result: Result?)
    {
        guard var state = open else { return ([], [], nil) }
        var messages: [(String, ByteBlock, Outgoing)] = []
        var closed: [(stage: Stage, agents: Int)] = []
        func send(_ party: UInt64, _ message: Outgoing) {
            if let agent = agents[party], let route = routes[agent] { messages.append((agent, route, message)) }
        }
        func due(_ stage: Stage, complete: Bool) -> Bool {
            state.stage == stage && (complete || now >= state.deadlines[stage] ?? now)
        }
        do throws(SecureAggregation.Failure) {
            if due(.keys, complete: state.keysFrom.count >= state.expected) {
                let roster = try state.server.closeRoster()
                state.roster = Set(roster.map(\.party))
                state.stage = .sharing
                closed.append((.keys, roster.count))
                for party in state.roster { send(party, .roster(SecureRosterMessage(round: state.round, roster: roster))) }
            }
            if due(.sharing, complete: state.sharesFrom.count >= state.roster.count) {
                let forwarded = try state.server.closeSharing()
                state.sharers = Set(forwarded.keys)
                state.stage = .masking
                closed.append((.sharing, forwarded.count))
                for (party, boxes) in forwarded {
                    send(party, .shares(SecureForwardedSharesMessage(round: state.round, shares: boxes)))
                }
            }
            if due(.masking, complete: state.inputs.count >= state.sharers.count) {
                state.survivors = try state.server.closeMaskedInput()
                state.stage = .signing
                closed.append((.masking, state.survivors.count))
                for party in state.survivors {
                    send(party, .survivors(SecureSurvivorsMessage(round: state.round, survivors: state.survivors)))
                }
            }
            if due(.signing, complete: state.signers.count >= state.survivors.count) {
                let request = try state.server.unmaskRequest()
                state.stage = .unmasking
                closed.append((.signing, request.signatures.count))
                for party in state.signers { send(party, .unmask(SecureUnmaskRequestMessage(round: state.round, request: request))) }
            }
            // Any t responses unmask the sum; waiting for more would change nothing.
            if due(.unmasking, complete: state.responders.count >= state.server.threshold) {
                guard state.responders.count >= state.server.threshold else {
                    throw .tooFew(step: "unmask responses", have: state.responders.count, need: state.server.threshold)
                }
                state.stage = .done
                closed.append((.unmasking, state.responders.count))
                open = nil
                ended = state.round
                unmasking = true
                let inputs = state.survivors.compactMap { state.inputs[$0] }
                return (messages, closed, .ready(round: state.round, server: state.server,
                                         agents: state.survivors.compactMap { agents[$0] },
                                         dropped: state.sharers.count - state.survivors.count,
                                         users: inputs.reduce(0) { $0 + $1.users },
                                         clipCount: inputs.reduce(0) { $0 + $1.clipCount }))
            }
        } catch {
            open = nil
            ended = state.round
            return (messages, closed, .failed(round: state.round, reason: error.description))
        }
        open = state
        return (messages, closed, nil)
    }

    /// Abandons the open round (it closed without a sum).
    package func abandon() {
        if let round = open?.round { ended = round }
        open = nil
        unmasking = false
    }
}
