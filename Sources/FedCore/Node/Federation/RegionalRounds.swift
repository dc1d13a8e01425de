import FedIO
package import FedLogic
package import FedModel
import Foundation
import Synchronization

/// Hierarchical aggregation (docs/ARCHITECTURE.md, "Scale"): a regional aggregator is an agent of the global
/// aggregator whose "training" is a round with its own agents. The bridge joins the two halves of the process —
/// the upstream ``AgentSession``'s ``RegionalRoundWorker`` (on a thread of its own, where it may block) asks for
/// a regional round with the global model and plan; the regional ``RoundDriverService`` opens it, closes it and
/// delivers its sum (``RoundCoordinator/closeForwarding()``).
package final class RegionalBridge: Sendable {
    package struct Request: Sendable {
        package var global: LSTMParameters<Float>
        package var modelVersion: UInt64
        package var plan: RoundPlan
    }

    package enum Outcome: Sendable {
        /// The regional round's sum (deltas, users, clip counts) and the agents in it.
        case sum(ModelUpdate, agents: [String])
        case failed(String)
    }

    private struct State {
        var request: Request?
        var outcome: Outcome?
        var wake: AsyncStream<RoundDriver.Event>.Continuation?
    }

    private let state = Mutex(State())
    private let delivered = DispatchSemaphore(value: 0)

    package init() {}

    /// The regional driver registers the stream its events arrive on.
    package func attach(_ wake: AsyncStream<RoundDriver.Event>.Continuation) {
        state.withLock { $0.wake = wake }
    }

    /// The request the driver is serving (the plan and model of the round it opens).
    package var pending: Request? { state.withLock { $0.request } }

    /// The driver's answer to the pending request.
    package func deliver(_ outcome: Outcome) {
        let answered = state.withLock { state -> Bool in
            guard state.request != nil, state.outcome == nil else { return false }
            state.outcome = outcome
            return true
        }
        if answered { delivered.signal() }
    }

    /// Blocks (on the worker's own thread) until the regional round for `request` delivered its outcome, or
    /// `timeout` passed.
    package func run(_ request: Request, timeout: Duration) -> Outcome {
        // A delivery that raced the previous request's timeout left a signal behind: it must not answer this one.
        while delivered.wait(timeout: .now()) == .success {}
        let wake = state.withLock { state -> AsyncStream<RoundDriver.Event>.Continuation? in
            state.request = request
            state.outcome = nil
            return state.wake
        }
        guard let wake else {
            state.withLock { $0.request = nil }
            return .failed("the regional rounds are not running")
        }
        wake.yield(.upstreamRound(deadlineMilliseconds: request.plan.deadlineMilliseconds))
        let waited = delivered.wait(timeout: .now() + .nanoseconds(Int(clamping: timeout.components.seconds * 1_000_000_000
            + timeout.components.attoseconds / 1_000_000_000)))
        return state.withLock { state -> Outcome in
            defer { (state.request, state.outcome) = (nil, nil) }
            if waited == .timedOut && state.outcome == nil { return .failed("the regional round did not close in time") }
            return state.outcome ?? .failed("no regional outcome")
        }
    }
}

/// The regional aggregator's worker towards the global aggregator: each global round runs one regional round with
/// the global model and plan; the region's sum is released upward, charged first to the region's own ledger.
///
/// Accounting in the tree: every shopper lives in one agent of one region. Each agent noises its own update and
/// charges its own ledger (with secure aggregation in the region, its share of the noise and the aggregate's
/// charge, as in a flat federation). The region's sum is post-processing of those releases, so it costs no shopper
/// anything more; the region's ledger charges the same mechanism (q, z) once per global round so that the global
/// aggregator can verify a receipt from it as from any agent, and so that the region's budget bounds what any of
/// its shoppers spends in the tree.
package struct RegionalRoundWorker: RoundWorker {
    let bridge: RegionalBridge
    let ledger: PrivacyLedger
    /// The region's floor on what it forwards; nil: NON-PRIVATE.
    let floor: PrivacyFloor?

    package init(bridge: RegionalBridge, ledger: PrivacyLedger, floor: PrivacyFloor?) {
        (self.bridge, self.ledger, self.floor) = (bridge, ledger, floor)
    }

    func releasePlan(_ round: RoundPlan, dimension: Int) -> RoundReleasePlan {
        let h = round.hyperparameters
        return RoundReleasePlan(samplingRate: h.samplingRate, noiseMultiplier: h.noiseMultiplier,
                                clipCountNoiseMultiplier: h.clipCountNoiseMultiplier, dimension: dimension)
    }

    package func refusal(of round: RoundPlan, dimension: Int) -> String? {
        if round.hyperparameters.secureThreshold > 0 {
            return "the global aggregator runs secure aggregation between regions, which regional sums cannot join yet"
        }
        return floor?.refusal(of: releasePlan(round, dimension: dimension))
    }

    package func privacyStatus() -> AgentPrivacyStatus? {
        AgentPrivacyStatus(isPrivate: floor != nil, budget: ledger.budget,
                           epsilonSpent: (try? ledger.spentEpsilon()) ?? .nan, floor: floor)
    }

    package func work(global: LSTMParameters<Float>, modelVersion: UInt64, round: RoundPlan,
                      mayRelease: @Sendable () -> Bool) throws -> RoundWork {
        let started = ContinuousClock.now
        if let reason = refusal(of: round, dimension: global.values.count) {
            throw RoundWorkError.belowFloor(round: round.round, reason: reason)
        }
        let update = releasePlan(round, dimension: global.values.count).update(round: round.round)
        let projected = try ledger.epsilon(after: update)
        guard projected <= ledger.budget.epsilon else {
            throw PrivacyLedgerError.budgetExceeded(spent: try ledger.spentEpsilon(), wouldBe: projected,
                                                    budget: ledger.budget, mechanism: update.mechanism)
        }
        // The regional round must close before the global deadline, with time left to send the sum up.
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let left = round.deadlineMilliseconds - now
        var regional = round
        regional.deadlineMilliseconds = now + max(1, left * 4 / 5)
        switch bridge.run(.init(global: global, modelVersion: modelVersion, plan: regional),
                          timeout: .milliseconds(max(1, left))) {
        case .failed(let reason):
            throw RoundWorkError.regional(round: round.round, reason: reason)
        case .sum(let sum, _):
            let chargedBefore = try ledger.lastID()
            try ledger.charge(update)
            return RoundWork(submission: LocalUpdate(round: round.round, modelVersion: modelVersion, users: sum.users,
                                                     clipCount: sum.clipCount, values: sum.deltaSum),
                             evaluation: nil, sampledUsers: sum.users, clippedUsers: 0, meanLoss: 0,
                             seconds: (ContinuousClock.now - started).inSeconds,
                             receipt: try ledger.records(after: chargedBefore))
        }
    }
}
