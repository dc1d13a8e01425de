import FedIO
package import FedLogic
package import FedModel
import Foundation
import Synchronization

/// Why a round's work produced nothing to send.
package enum RoundWorkError: Error, CustomStringConvertible {
    case deadlinePassed(round: UInt64, seconds: Double)
    /// The announced parameters break this agent's ``PrivacyFloor``: nothing was read, released or charged.
    case belowFloor(round: UInt64, reason: String)
    /// A secure-aggregation round in which this agent's keys or shares did not make it into the
    /// protocol in time: its update could never be sent, so nothing more was charged.
    case notInSecureRound(round: UInt64)
    /// A regional aggregator's round with its agents produced no sum (too few agents, a round still open, the
    /// deadline): nothing was forwarded or charged.
    case regional(round: UInt64, reason: String)

    package var description: String {
        switch self {
        case let .regional(round, reason):
            "round \(round): the regional round gave no sum to forward (\(reason)); nothing was forwarded or charged"
        case let .deadlinePassed(round, seconds):
            String(format: "round %llu closed while this agent trained (%.1f s): the update was discarded before "
                   + "release, nothing was charged. A faster node, fewer users per round (sampling_rate) or a longer "
                   + "rounds.timeout_seconds would let it take part", round, seconds)
        case let .notInSecureRound(round):
            "round \(round): this agent did not receive the other agents' shares by its release cutoff (it joined "
                + "late or the aggregator closed the step without it), so its update could not be sent; the update "
                + "and the alert-rate counts were not charged"
        case let .belowFloor(round, reason):
            "round \(round) refused: \(reason). Nothing was released or charged; the agent takes part again when the "
                + "aggregator announces parameters within its privacy floor (privacy.min_noise_multiplier, "
                + "privacy.max_sampling_rate)"
        }
    }
}

/// An agent's local work for a round. Runs on a dedicated thread (it is CPU-bound and synchronous).
package protocol RoundWorker: Sendable {
    /// `mayRelease` says whether the releases can be sent (secure aggregation: this agent is in the
    /// protocol); once training is done the worker waits for it until the release cutoff, and when it
    /// stays false nothing more is charged.
    func work(global: LSTMParameters<Float>, modelVersion: UInt64, round: RoundPlan,
              mayRelease: @Sendable () -> Bool) throws -> RoundWork
    /// What the agent's status file says about privacy; nil when the worker keeps no ledger.
    func privacyStatus() -> AgentPrivacyStatus?
    /// Why this agent will refuse `round` outright (its privacy floor), checked before the round's
    /// secure-aggregation keys are advertised; nil when it takes part.
    func refusal(of round: RoundPlan, dimension: Int) -> String?
}

extension RoundWorker {
    package func privacyStatus() -> AgentPrivacyStatus? { nil }
    package func refusal(of round: RoundPlan, dimension: Int) -> String? { nil }

    package func work(global: LSTMParameters<Float>, modelVersion: UInt64, round: RoundPlan) throws -> RoundWork {
        try work(global: global, modelVersion: modelVersion, round: round, mayRelease: { true })
    }
}

/// The privacy an agent runs with, for its status file and logs.
package struct AgentPrivacyStatus: Sendable, Equatable {
    /// False only with `non_private: true`.
    package var isPrivate: Bool
    package var budget: PrivacyBudget
    package var epsilonSpent: Double
    package var floor: PrivacyFloor?

    /// `privacy` in `status.json`: NON-PRIVATE, or the budget, what is spent and the floor.
    package var document: [String: Any] {
        guard isPrivate, let floor else { return ["mode": "NON-PRIVATE"] }
        return ["mode": "private", "epsilon_budget": budget.epsilon, "delta": budget.delta,
                "epsilon_spent": epsilonSpent.isFinite ? epsilonSpent : -1,
                "epsilon_left": max(0, budget.epsilon - (epsilonSpent.isFinite ? epsilonSpent : budget.epsilon)),
                "min_noise_multiplier": floor.minNoiseMultiplier, "max_sampling_rate": floor.maxSamplingRate]
    }
}

/// The real worker: reads each user's recent events from the store, holds out the most recent one,
/// evaluates the global model on it for a fixed set of users, Poisson-samples users with the CSPRNG,
/// trains and clips their updates and sums them (``LocalTraining``), adds Gaussian noise N(0, z²S²) per
/// coordinate at the agent, and charges every release to the privacy ledger before returning it.
package struct StoreRoundWorker: RoundWorker {
    /// What the round's alert-rate release (``AlertRateCalibration``) needs from live scoring.
    package struct Alerting: Sendable {
        package var detector: SwitchDetector.Settings
        package var rule: AlertRule
        package var calibration: AlertRateCalibration.Settings
        /// Churn risk as live scoring checks it: the detector, its clock, the what-if window and clip.
        package var churn: ChurnDetector.Settings
        package var churnCheckSeconds: Int64
        package var churnCalibration = ChurnRateCalibration.Settings(budgetPer1kDays: 1)
        /// The thresholds the agent's live scoring applies now.
        package var thresholds: @Sendable () -> AlertThresholds

        package init(detector: SwitchDetector.Settings, rule: AlertRule, calibration: AlertRateCalibration.Settings,
                     churn: ChurnDetector.Settings, churnCheckSeconds: Int64,
                     thresholds: @escaping @Sendable () -> AlertThresholds) {
            (self.detector, self.rule, self.calibration, self.thresholds) = (detector, rule, calibration, thresholds)
            (self.churn, self.churnCheckSeconds) = (churn, churnCheckSeconds)
        }
    }

    package let store: EventStore
    package let catalog: CategoryCatalog
    package let evaluationUsers: Int
    package let threads: Int
    package let ledger: PrivacyLedger
    /// This agent's floor on the noise of every release; nil only when it runs NON-PRIVATE
    /// (`non_private: true`): then it releases what the aggregator asks, held-out evaluations exactly,
    /// and the ledger records every release at ε = ∞.
    package let floor: PrivacyFloor?
    /// With a finite budget, held-out evaluations are released only with this noise (0: not at all).
    package let evaluationNoiseMultiplier: Double
    /// The alert threshold's calibration: what the agent's live scoring does (detector settings, alert
    /// rule) and the threshold in force; nil: no alert-rate release.
    package let alerting: Alerting?
    /// Deliberate mechanism faults, for the privacy audits' controls that must fail (noise scaled below
    /// what the ledger charges, clipping switched off). No configuration key or command sets them.
    package struct Faults: Sendable, Equatable {
        package var noiseScale = 1.0
        package var clipping = true
        package init(noiseScale: Double = 1, clipping: Bool = true) {
            (self.noiseScale, self.clipping) = (noiseScale, clipping)
        }
    }
    package var faults = Faults()
    /// Demand counts for the aggregator's trend warnings (`trends.release`), with this noise per count
    /// when private; nil: none released.
    package var demand: Demand?

    package struct Demand: Sendable {
        package var noiseMultiplier: Double
        /// The newest event row already counted in a release: each release counts what arrived since.
        let cursor: Cursor
        package init(noiseMultiplier: Double, after eventID: Int64) {
            self.noiseMultiplier = noiseMultiplier
            cursor = Cursor(eventID)
        }
        final class Cursor: Sendable {
            private let value: Mutex<Int64>
            init(_ value: Int64) { self.value = Mutex(value) }
            var eventID: Int64 {
                get { value.withLock { $0 } }
                set { value.withLock { $0 = newValue } }
            }
        }
    }
    /// Hold the round's releases until the cutoff, so their timing does not depend on the data (private
    /// agents by default; `privacy.release: when_ready` turns it off, NON-PRIVATE agents never hold).
    package var releaseAtCutoff = false

    /// Work stops, and releases leave, this long before the round's deadline: a fifth of a 10-second
    /// round, at most 2 s, at least 250 ms (sealing, sending and clock skew).
    package static func cutoff(deadlineMilliseconds: Int64, now: Double = Date().timeIntervalSince1970 * 1000) -> Double {
        let remaining = Double(deadlineMilliseconds) - now
        return Double(deadlineMilliseconds) - min(2_000, max(250, 0.2 * remaining))
    }
    /// Per-user held-out loss is clamped to this many nats, so one user's share of the loss sum is bounded.
    static let lossClamp = 30.0

    package init(store: EventStore, catalog: CategoryCatalog, evaluationUsers: Int, threads: Int,
                 ledger: PrivacyLedger, floor: PrivacyFloor?, evaluationNoiseMultiplier: Double = 0,
                 alerting: Alerting? = nil) {
        self.alerting = alerting
        self.floor = floor
        self.store = store
        self.catalog = catalog
        self.evaluationUsers = evaluationUsers
        self.threads = threads
        self.ledger = ledger
        self.evaluationNoiseMultiplier = evaluationNoiseMultiplier
    }

    /// The round's releases as this agent would make and charge them — the same plan `aggregator
    /// privacy-plan` composes. Secure aggregation: this agent adds 1/t of the noise and is charged for
    /// the aggregate.
    func releasePlan(_ round: RoundPlan, dimension: Int) -> RoundReleasePlan {
        let h = round.hyperparameters
        return RoundReleasePlan(samplingRate: h.samplingRate, noiseMultiplier: h.noiseMultiplier,
                                clipCountNoiseMultiplier: h.clipCountNoiseMultiplier,
                                alertRateNoiseMultiplier: alerting != nil ? h.histogramNoiseMultiplier : nil,
                                evaluationNoiseMultiplier: evaluationNoiseMultiplier, dimension: dimension,
                                secure: h.distributedRelease,
                                demandNoiseMultiplier: floor == nil ? nil : demand?.noiseMultiplier)
    }

    package func refusal(of round: RoundPlan, dimension: Int) -> String? {
        let h = round.hyperparameters
        if h.secureThreshold > 0, h.distributedRelease == nil {
            return "the announced secure-aggregation grid (\(h.secureBits) bits, threshold \(h.secureThreshold)) is invalid"
        }
        return floor?.refusal(of: releasePlan(round, dimension: dimension))
    }

    package func privacyStatus() -> AgentPrivacyStatus? {
        AgentPrivacyStatus(isPrivate: floor != nil, budget: ledger.budget,
                           epsilonSpent: (try? ledger.spentEpsilon()) ?? .nan, floor: floor)
    }

    /// One pass over the store: each user's last `sequenceLength + 1` events. The training sequence
    /// is all but the most recent event (kept for `isTrained`); the first `evaluationUsers` evaluable
    /// users (in user-id order, so the same users every round) are returned whole for evaluation.
    package static func read(store: EventStore, catalog: CategoryCatalog, sequenceLength: Int, evaluationUsers: Int,
                             isTrained: (EventSequence) -> Bool) throws(StorageError)
        -> (training: [EventSequence], evaluation: [EventSequence])
    {
        var training: [EventSequence] = [], evaluation: [EventSequence] = []
        try store.forEachRecentSequence(limit: sequenceLength + 1) { _, events in
            let sequence = EventSequence(events: events, catalog: catalog)
            if evaluation.count < evaluationUsers,
               NextCategoryEvaluation.isEvaluable(sequence, outOfVocabulary: catalog.outOfVocabulary) {
                evaluation.append(sequence)
            }
            let prefix = EventSequence(categories: Array(sequence.categories.dropLast()),
                                       actions: Array(sequence.actions.dropLast()), gaps: Array(sequence.gaps.dropLast()))
            if isTrained(prefix) { training.append(prefix) }
        }
        return (training, evaluation)
    }

    package func work(global: LSTMParameters<Float>, modelVersion: UInt64, round: RoundPlan,
                      mayRelease: @Sendable () -> Bool) throws -> RoundWork {
        let started = ContinuousClock.now
        let h = round.hyperparameters
        let secure = h.distributedRelease
        let plan = releasePlan(round, dimension: global.values.count)
        // Fail closed: the aggregator announces q and the noise, but this agent decides what it releases.
        if let reason = refusal(of: round, dimension: global.values.count) {
            throw RoundWorkError.belowFloor(round: round.round, reason: reason)
        }
        let update = plan.update(round: round.round)
        let histogram = plan.alertRate(round: round.round)
        // Refuse before spending any compute when the update could not be released anyway.
        let combined = Self.combined([update] + [histogram, plan.demand(round: round.round)].compactMap { $0 })
        let projected = try ledger.epsilon(after: combined)
        guard projected <= ledger.budget.epsilon else {
            throw PrivacyLedgerError.budgetExceeded(spent: try ledger.spentEpsilon(), wouldBe: projected,
                                                    budget: ledger.budget, mechanism: update.mechanism)
        }
        let evaluate = floor == nil || evaluationNoiseMultiplier > 0
        let chargedBefore = try ledger.lastID()
        // Fixed shape: every release is made whatever the data. Work that is not done by the cutoff is
        // dropped and replaced by noise alone (still charged), so whether a release exists, and — with
        // `releaseAtCutoff` — when it leaves, does not depend on how many users were sampled.
        let cutoff = Self.cutoff(deadlineMilliseconds: round.deadlineMilliseconds)
        let pastCutoff = { Date().timeIntervalSince1970 * 1000 >= cutoff }
        var trained = h
        if !faults.clipping { trained.clipNorm = .greatestFiniteMagnitude }
        let training = LocalTraining(hyperparameters: trained, threads: threads)
        var random = SodiumRandom()
        let data = try Self.read(store: store, catalog: catalog, sequenceLength: Int(h.sequenceLength),
                                 evaluationUsers: evaluate ? evaluationUsers : 0) { training.isSampled($0, random: &random) }
        // Every release's noise: exact discrete Gaussian samples over the buffered CSPRNG.
        var exact = SodiumStream()
        // Every release's charge, made together with the update's once the deadline check passed: past
        // the deadline nothing leaves, so nothing is charged (and the demand cursor does not move).
        var pending: [PlannedRelease] = []
        var report: EvaluationRelease?
        if evaluate {
            let measured = data.evaluation.isEmpty || pastCutoff() ? NextCategoryEvaluation()
                : NextCategoryEvaluation.evaluate(parameters: global, sequences: data.evaluation,
                                                  outOfVocabulary: catalog.outOfVocabulary, lossClamp: Self.lossClamp)
            report = try releaseEvaluation(measured, planned: plan.evaluation(round: round.round), round: round.round,
                                           modelVersion: modelVersion, pending: &pending, random: &exact)
        }
        let trainedResult = training.run(global: global, users: data.training, shouldStop: {
            Failpoint.agentTraining.reach()
            return pastCutoff()
        })
        let noiseOnly = trainedResult == nil
        let result = trainedResult ?? .empty(count: global.values.count)
        // The update: quantised, plus discrete Gaussian noise sampled exactly from the CSPRNG — all of it,
        // or with secure aggregation this agent's 1/t share, on the secure grid (never sent unmasked).
        var values: [Float] = [], secureInput: SecretWords?
        if let secure {
            secureInput = SecretWords(secure.encode(result.deltaSum, random: &exact))
        } else {
            values = QuantisedRelease.noised(result.deltaSum, clipNorm: h.clipNorm, noiseMultiplier: h.noiseMultiplier,
                                             noiseScale: faults.noiseScale, random: &exact)
        }
        var clipCount = 0.0
        if h.clipCountNoiseMultiplier > 0 {
            // Adaptive clipping: Σ (b − ½) over sampled users, b = 1 when the delta was within S (centred:
            // sensitivity ½), noised, and charged with the update as one mechanism (`update` above).
            let centred = Double(result.sampledUsers - result.clippedUsers) - 0.5 * Double(result.sampledUsers)
            clipCount = QuantisedRelease.noisedSums([centred], scales: [RoundReleasePlan.clipCountSensitivity],
                                                    noiseMultiplier: h.clipCountNoiseMultiplier / RoundReleasePlan.clipCountSensitivity,
                                                    random: &exact)[0]
        }
        if secure != nil {
            // The protocol's first steps may still be running (they wait up to 0.3 T for slow agents):
            // wait for this agent's shares until the cutoff — a dedicated thread, never the cooperative pool.
            while !mayRelease(), !pastCutoff() { Thread.sleep(forTimeInterval: 0.02) }
            guard mayRelease() else { throw RoundWorkError.notInSecureRound(round: round.round) }
        }
        var histogramReport: HistogramRelease?
        if let histogram, let alerting {
            // What-if at the thresholds in force over Poisson-sampled users' recent events (each user's
            // four counts clipped: L2 sensitivity 2 of the scaled vector, accounted as z / 2).
            let counts = noiseOnly ? [] : try whatIfCounts(alerting, global: global, samplingRate: h.samplingRate,
                                                           random: &random, shouldStop: pastCutoff) ?? []
            let released = AlertRateCalibration.release(counts, settings: alerting.calibration,
                                                        churn: alerting.churnCalibration,
                                                        noiseMultiplier: h.histogramNoiseMultiplier, random: &exact)
            pending.append(histogram)
            histogramReport = HistogramRelease(round: round.round, counts: released.values)
        }
        let demandRelease = try releaseDemand(planned: plan.demand(round: round.round), round: round.round,
                                              samplingRate: h.samplingRate, pending: &pending, random: &random,
                                              exact: &exact)
        // Past the deadline itself the aggregator refuses the round's messages: release nothing, charge nothing.
        guard Date().timeIntervalSince1970 * 1000 < Double(round.deadlineMilliseconds) else {
            throw RoundWorkError.deadlinePassed(round: round.round, seconds: (ContinuousClock.now - started).inSeconds)
        }
        for charge in pending { try ledger.charge(charge) }
        try ledger.charge(update)
        if let demandRelease { demand?.cursor.eventID = demandRelease.through }
        let demandReport = demandRelease?.release
        // The receipt: the signed ledger entries this round's releases charged, for the aggregator to check.
        let receipt = try ledger.records(after: chargedBefore)
        if releaseAtCutoff {
            let wait = cutoff / 1000 - Date().timeIntervalSince1970
            if wait > 0 { Thread.sleep(forTimeInterval: wait) }  // a dedicated thread, never the cooperative pool
        }
        return RoundWork(
            submission: LocalUpdate(round: round.round, modelVersion: modelVersion,
                                    users: h.noiseMultiplier > 0 ? 0 : result.sampledUsers,
                                         clipCount: clipCount, values: values),
            evaluation: report, histogram: histogramReport, sampledUsers: result.sampledUsers,
            clippedUsers: result.clippedUsers,
            meanLoss: result.meanLoss, seconds: (ContinuousClock.now - started).inSeconds, noiseOnly: noiseOnly,
            receipt: receipt, secureInput: secureInput, demand: demandReport)
    }

    /// Releases charged together, as one for a budget check: their RDP curves add up.
    static func combined(_ releases: [PlannedRelease]) -> PlannedRelease {
        guard var total = releases.first else { return .gaussian(mechanism: "none", round: 0, noiseMultiplier: .infinity) }
        for extra in releases.dropFirst() { total.rdp = zip(total.rdp, extra.rdp).map { $0 + $1 } }
        return total
    }

    /// The demand counts since the previous release (``CategoryDemand``): shoppers Poisson-sampled at the
    /// round's rate, each in at most k model categories (their most active) and once in the total; every
    /// category of the model released, noised (exact discrete Gaussian, the same grid as the other sums),
    /// and charged before it leaves. NON-PRIVATE agents release them exactly, recorded at ε = ∞.
    private func releaseDemand(planned: PlannedRelease?, round: UInt64, samplingRate: Double,
                               pending: inout [PlannedRelease], random: inout SodiumRandom,
                               exact: inout SodiumStream) throws -> (release: DemandRelease, through: Int64)? {
        guard let demand else { return nil }
        let last = try store.lastEventID()
        var perShopper: [UInt64: [Int: Int]] = [:]
        for row in try store.categoryCounts(after: demand.cursor.eventID, upTo: last) {
            perShopper[row.user, default: [:]][Int(catalog.modelIndex(of: row.category)), default: 0] += row.events
        }
        let size = catalog.categories
        var counts = [Double](repeating: 0, count: size + 1)  // [shoppers, category 0, 1, …]
        for (_, categories) in perShopper.sorted(by: { $0.key < $1.key })
            where floor == nil || Double.random(in: 0..<1, using: &random) < samplingRate {
            counts[0] += 1
            let top = categories.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
                .prefix(CategoryDemand.categoriesPerShopper)
            for (index, _) in top where index < size { counts[index + 1] += 1 }
        }
        let released: [Double]
        if floor == nil {
            pending.append(.gaussian(mechanism: "demand_counts", round: round, noiseMultiplier: 0))
            released = counts
        } else {
            guard let planned, try ledger.epsilon(after: Self.combined(pending + [planned])) <= ledger.budget.epsilon else {
                return nil
            }
            released = QuantisedRelease.noisedSums(counts, scales: [Double](repeating: 1, count: counts.count),
                                                   noiseMultiplier: demand.noiseMultiplier, random: &exact)
            pending.append(planned)
        }
        return (DemandRelease(round: round, noiseMultiplier: floor == nil ? 0 : demand.noiseMultiplier,
                              shoppers: released[0], counts: Array(released.dropFirst())), last)
    }

    /// Each Poisson-sampled user's exact, clipped what-if counts: their most recent events replayed
    /// through a fresh detector (prior: the global model's), alerts at the threshold in force; and the
    /// churn warnings the live clock would have raised in the last days before the store's newest event.
    private func whatIfCounts(_ alerting: Alerting, global: LSTMParameters<Float>, samplingRate: Double,
                              random: inout SodiumRandom, shouldStop: () -> Bool) throws -> [AlertRateCalibration.Counts]? {
        let detector = SwitchDetector(settings: alerting.detector,
                                      prior: StreamingScorer(parameters: global).initialDistribution())
        let churn = ChurnDetector(settings: alerting.churn)
        let thresholds = alerting.thresholds()
        let now = try store.latestEventTime() ?? 0
        var counts: [AlertRateCalibration.Counts] = []
        var stopped = false
        try store.forEachRecentSequence(limit: alerting.calibration.eventWindow) { _, events in
            guard Double.random(in: 0..<1, using: &random) < samplingRate, !stopped else { return }
            if counts.count % 64 == 0 && shouldStop() {
                stopped = true
                return
            }
            var state = SwitchDetector.UserState()
            let series = events.map { detector.update(&state, category: catalog.modelIndex(of: $0.category)) }
            var user = AlertRateCalibration.userCounts(series, threshold: thresholds.interestShift, rule: alerting.rule,
                                                       settings: alerting.calibration)
            let settings = alerting.churnCalibration
            let warnings = churn.whatIf(times: events.map(\.timestamp), intents: events.map { $0.action != .view },
                                        now: now, threshold: thresholds.churnRisk,
                                        checkSeconds: alerting.churnCheckSeconds, windowDays: settings.windowDays,
                                        clip: settings.warningClip)
            user.churnWarnings = Double(warnings.warnings)
            user.shopperDays = warnings.days
            counts.append(user)
        }
        return stopped ? nil : counts
    }

    /// The evaluation as released: exact when NON-PRIVATE (recorded at ε = ∞); otherwise the vector (users, top-1 hits,
    /// top-10 hits, loss sum / clamp), whose L2 sensitivity to one user is 2, gets N(0, (2·z_e)²) per
    /// coordinate and is charged as a Gaussian mechanism with noise multiplier z_e.
    private func releaseEvaluation(_ measured: NextCategoryEvaluation, planned: PlannedRelease?, round: UInt64,
                                   modelVersion: UInt64, pending: inout [PlannedRelease],
                                   random: inout SodiumStream) throws -> EvaluationRelease? {
        guard floor != nil else {
            pending.append(.gaussian(mechanism: "evaluation", round: round, noiseMultiplier: 0))
            return EvaluationRelease(round: round, modelVersion: modelVersion, users: measured.users,
                                     top1Hits: measured.top1Hits, top10Hits: measured.top10Hits, lossSum: measured.lossSum)
        }
        guard let release = planned else { return nil }
        guard try ledger.epsilon(after: Self.combined(pending + [release])) <= ledger.budget.epsilon else { return nil }
        // Four sums each moved by at most 1 by one user, noise 2·z_e each (exact discrete Gaussian).
        let noised = QuantisedRelease.noisedSums(
            [Double(measured.users), Double(measured.top10Hits), Double(measured.top1Hits), measured.lossSum / Self.lossClamp],
            scales: [1, 1, 1, 1], noiseMultiplier: 2 * evaluationNoiseMultiplier, random: &random)
        let users = max(0, noised[0].rounded())
        let top10 = min(users, max(0, noised[1].rounded()))
        let top1 = min(top10, max(0, noised[2].rounded()))
        let loss = max(0, noised[3]) * Self.lossClamp
        pending.append(release)
        return EvaluationRelease(round: round, modelVersion: modelVersion, users: Int(users), top1Hits: Int(top1),
                                 top10Hits: Int(top10), lossSum: loss)
    }
}
