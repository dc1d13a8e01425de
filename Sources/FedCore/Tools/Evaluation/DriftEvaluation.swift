import FedIO
package import FedLogic
package import FedModel
package import FedNode
import Foundation

/// `edge-agent evaluate-drift`: every method sees the same streams. A stream is one user's events
/// (model categories, actions); a switched stream has a known switch index. Each method turns a stream
/// into a per-event statistic; alarms are first crossings of a threshold, followed by a 30-event
/// cool-down and re-arming below the threshold. Each method's threshold is set on the unswitched streams
/// to the largest alarm count within the alert budget, then detection is measured on the switched ones.
package enum DriftEvaluation {
    package struct Stream: Sendable {
        /// Model categories (the catalog's top categories, the rest in one out-of-vocabulary bucket).
        package var categories: [Int32]
        /// The same events' categories over the whole vocabulary, for the model-free detectors.
        package var raw: [Int32]
        package var actions: [UInt8]
        /// Index of the first event after the switch; nil for an unswitched stream.
        package var switchIndex: Int?
        package init(categories: [Int32], raw: [Int32]? = nil, actions: [UInt8], switchIndex: Int?) {
            precondition(raw == nil || raw?.count == categories.count, "one raw category per event")
            (self.categories, self.raw, self.actions, self.switchIndex) = (categories, raw ?? categories, actions, switchIndex)
        }
    }

    package struct Row: Sendable, Codable {
        package var workload: String
        package var budgetPer10k: Double
        package var method: String
        package var switches: Int
        package var detectionRate: Double
        package var falseAlarmsPer10k: Double
        package var delayP50: Double?
        package var delayP90: Double?
        package var proactiveHR10: Double?
        package var ordinaryHR10: Double?
        /// The alert-rate calibration error: false alarms and detection realised on these streams at the
        /// threshold that met the budget on other users (fold 0); nil when not measured.
        package var calibratedFalseAlarmsPer10k: Double?
        package var calibratedDetectionRate: Double?

        enum CodingKeys: String, CodingKey {
            case workload, method, switches
            case budgetPer10k = "budget_per_10k", detectionRate = "detection_rate"
            case falseAlarmsPer10k = "false_alarms_per_10k", delayP50 = "delay_p50", delayP90 = "delay_p90"
            case proactiveHR10 = "proactive_hr10", ordinaryHR10 = "ordinary_hr10"
            case calibratedFalseAlarmsPer10k = "calibrated_false_alarms_per_10k"
            case calibratedDetectionRate = "calibrated_detection_rate"
        }
    }

    static let window = 30, coolDown = 30, horizon = 20

    /// Per-event statistics of every method for one stream, plus the model's per-event top-10 categories
    /// (ordinary) and FedDrift's emerging-first top-10 (proactive).
    struct Scored {
        var statistics: [String: [Double]]
        var ordinaryTop10: [[Int32]]
        var proactiveTop10: [[Int32]]
    }

    /// `feddrift`: the switch detector (``SwitchDetector``); `cusum_surprise_js`: the previous detector
    /// (CUSUM on the LSTM's surprise + profile divergence), kept as a baseline; `new_categories`: the
    /// number of distinct never-seen categories since the user last returned to one seen before.
    package static let methods = ["feddrift", "cusum_surprise_js", "new_categories", "iqr", "window", "page_hinkley",
                                  "adwin"]

    /// The population prior g for ``SwitchDetector`` from `users`' category sequences: the smoothed
    /// share of users who touched each of `categories` categories.
    package static func prior(from users: [[Int32]], categories: Int) -> [Double] {
        var touching = [Double](repeating: 0, count: categories)
        for user in users {
            for category in Set(user) where Int(category) < categories { touching[Int(category)] += 1 }
        }
        return SwitchDetector.prior(usersTouching: touching, users: Double(users.count))
    }

    static func score(_ stream: Stream, scorer: StreamingScorer, settings: DriftDetector.Settings,
                      switches: SwitchDetector) -> Scored {
        let count = stream.categories.count
        var statistics = Dictionary(uniqueKeysWithValues: methods.map { ($0, [Double](repeating: 0, count: count)) })
        var ordinary: [[Int32]] = [], proactive: [[Int32]] = []
        ordinary.reserveCapacity(count)
        proactive.reserveCapacity(count)
        var state = [Float](repeating: 0, count: scorer.stateSize)
        scorer.reset(&state)
        let detector = DriftDetector(settings: settings)
        var drift = DriftDetector.UserState()
        var switchState = SwitchDetector.UserState()
        var seen = Set<Int32>()
        var newSinceReturn = Set<Int32>(), seenRaw = Set<Int32>()
        var novelty: [Double] = []          // 1 when the event's category is new to the user
        var interest: [Double] = []         // share of the user's history in the event's category
        var counts: [Int32: Double] = [:]
        var pageHinkley = PageHinkley()
        var adwin = Adwin()
        let C = scorer.shape.categories
        for index in 0..<count {
            let category = stream.categories[index]
            let surprise = scorer.step(&state, category: Int(category), action: Int(stream.actions[index]))
            _ = detector.update(&drift, category: category, action: stream.actions[index], surprise: Double(surprise),
                                threshold: .infinity)
            statistics["cusum_surprise_js"]?[index] = drift.score
            // The model-free statistics see the whole vocabulary.
            let raw = stream.raw[index]
            statistics["feddrift"]?[index] = switches.update(&switchState, category: raw)
            if !seenRaw.contains(raw) {
                newSinceReturn.insert(raw)
            } else if !newSinceReturn.contains(raw) {
                newSinceReturn.removeAll()  // back to a category seen before the excursion
            }
            seenRaw.insert(raw)
            statistics["new_categories"]?[index] = Double(newSinceReturn.count)
            // Baselines on the user's own model-category stream.
            let isNew = seen.contains(category) ? 0.0 : 1.0
            seen.insert(category)
            novelty.append(isNew)
            let total = Double(index)
            interest.append(total == 0 ? 1 : (counts[category] ?? 0) / total)
            counts[category, default: 0] += 1
            statistics["iqr"]?[index] = iqrStatistic(interest)
            let recent = novelty.suffix(10)
            statistics["window"]?[index] = recent.reduce(0, +) / Double(recent.count)
            statistics["page_hinkley"]?[index] = pageHinkley.update(isNew)
            statistics["adwin"]?[index] = adwin.update(isNew)
            // Rankings for the next events: the model's distribution after this event.
            let ranked = scorer.topCategories(count: 10, excluding: C - 1)
            ordinary.append(ranked)
            let emerging = drift.direction(count: 10)
                .emerging.map(\.category).filter { $0 != Int32(C - 1) }
            var boosted = emerging.prefix(5).map { $0 }
            for candidate in ranked where boosted.count < 10 && !boosted.contains(candidate) { boosted.append(candidate) }
            proactive.append(boosted)
        }
        return Scored(statistics: statistics, ordinaryTop10: ordinary, proactiveTop10: proactive)
    }

    /// How far the newest value of the interest series falls below the user's Tukey fence:
    /// (Q1 − value) / IQR over the past values (a low share of the history = an unusual category).
    static func iqrStatistic(_ series: [Double]) -> Double {
        guard series.count > 8 else { return 0 }
        let past = series.dropLast().suffix(100).sorted()
        let q1 = past[past.count / 4], q3 = past[past.count * 3 / 4]
        let iqr = max(q3 - q1, 0.02)
        return max(0, (q1 - series[series.count - 1]) / iqr)
    }

    /// Page–Hinkley for an increase in the mean of x (δ = 0.05); the statistic is m_t − min m.
    struct PageHinkley {
        var count = 0.0, mean = 0.0, cumulative = 0.0, minimum = 0.0
        mutating func update(_ x: Double) -> Double {
            count += 1
            mean += (x - mean) / count
            cumulative += x - mean - 0.05
            minimum = min(minimum, cumulative)
            return cumulative - minimum
        }
    }

    /// ADWIN (Bifet & Gavaldà 2007) over a window of at most 200 values: the statistic is the largest
    /// |mean(recent) − mean(older)| over the cuts, divided by the Hoeffding-style bound ε_cut at δ = 0.01
    /// (a value ≥ 1 is ADWIN's change); the window drops the older part on a change.
    struct Adwin {
        var values: [Double] = []
        mutating func update(_ x: Double) -> Double {
            values.append(x)
            if values.count > 200 { values.removeFirst(values.count - 200) }
            let n = values.count
            guard n >= 10 else { return 0 }
            var prefix = [Double](repeating: 0, count: n + 1)
            for index in 0..<n { prefix[index + 1] = prefix[index] + values[index] }
            var best = 0.0, cut = 0
            for split in stride(from: 5, through: n - 5, by: 1) {
                let n0 = Double(split), n1 = Double(n - split)
                let difference = (prefix[n] - prefix[split]) / n1 - prefix[split] / n0
                let m = 1 / (1 / n0 + 1 / n1)
                let bound = (log(4 * Double(n) / 0.01) / (2 * m)).squareRoot()
                if difference / bound > best {
                    best = difference / bound
                    cut = split
                }
            }
            if best >= 1 { values.removeFirst(cut) }
            return best
        }
    }

    /// Alarm indices for a statistic at `threshold`: the agent's rule (first crossing after 10 events,
    /// cool-down, re-arm below it).
    static func alarms(_ statistic: [Double], threshold: Double) -> [Int] {
        AlertRule(warmUp: 10, coolDown: coolDown).alarms(statistic, threshold: threshold)
    }

    /// Evaluates every method at each budget (alarms per 10,000 events on the unswitched streams).
    ///
    /// - Parameter progress: counts the streams scored (every method, event by event), the long part.
    package static func evaluate(workload: String, streams: [Stream], scorer: StreamingScorer,
                                 budgets: [Double], settings: DriftDetector.Settings = .init(),
                                 switches: SwitchDetector, progress: ProgressReporter = .silent) -> [Row] {
        progress.begin("scoring \(workload) streams", total: streams.count, unit: "streams")
        let scored = streams.map { stream in
            defer { progress.advance() }
            return score(stream, scorer: scorer, settings: settings, switches: switches)
        }
        progress.finish()
        var rows: [Row] = []
        for budget in budgets {
            for method in methods {
                let detection = detection(statistics: scored.map { $0.statistics[method] ?? [] }, streams: streams,
                                          budget: budget)
                var proactiveHits = 0.0, ordinaryHits = 0.0, horizonEvents = 0.0
                for (index, alarm) in detection.firstAlarms {
                    let next = streams[index].categories[(alarm + 1)..<min(alarm + 1 + horizon, streams[index].categories.count)]
                    let proactive = Set(scored[index].proactiveTop10[alarm]), ordinary = Set(scored[index].ordinaryTop10[alarm])
                    proactiveHits += Double(next.filter { proactive.contains($0) }.count)
                    ordinaryHits += Double(next.filter { ordinary.contains($0) }.count)
                    horizonEvents += Double(next.count)
                }
                rows.append(Row(
                    workload: workload, budgetPer10k: budget, method: method, switches: detection.switches,
                    detectionRate: detection.rate, falseAlarmsPer10k: detection.falseAlarmsPer10k,
                    delayP50: detection.delayP50, delayP90: detection.delayP90,
                    proactiveHR10: horizonEvents > 0 ? proactiveHits / horizonEvents : nil,
                    ordinaryHR10: horizonEvents > 0 ? ordinaryHits / horizonEvents : nil))
            }
        }
        return rows
    }

    /// One method's result at one budget.
    package struct Detection: Sendable, Equatable {
        /// The lowest threshold whose alarms on the unswitched streams fit the budget.
        package var threshold: Double
        package var switches: Int
        /// Share of switched streams with an alarm within ``window`` events of the switch.
        package var rate: Double
        package var falseAlarmsPer10k: Double
        /// Delays (the switch event counts as 1), median and 90th percentile.
        package var delayP50: Double?
        package var delayP90: Double?
        /// Each detected switched stream's index and its first alarm in the window.
        package var firstAlarms: [(stream: Int, alarm: Int)]

        package static func == (lhs: Detection, rhs: Detection) -> Bool {
            (lhs.threshold, lhs.switches, lhs.rate, lhs.falseAlarmsPer10k, lhs.delayP50, lhs.delayP90)
                == (rhs.threshold, rhs.switches, rhs.rate, rhs.falseAlarmsPer10k, rhs.delayP50, rhs.delayP90)
        }
    }

    /// Sets the threshold on the unswitched streams to the budget (bisection over the statistic's
    /// range) and measures detection on the switched ones; `statistics[i]` is stream i's series.
    /// With `threshold`, uses it instead (the budget then only names the row).
    package static func detection(statistics: [[Double]], streams: [Stream], budget: Double,
                                  threshold fixed: Double? = nil) -> Detection {
        let unswitched = streams.indices.filter { streams[$0].switchIndex == nil }
        let switched = streams.indices.filter { streams[$0].switchIndex != nil }
        let cleanEvents = unswitched.reduce(0) { $0 + streams[$1].categories.count }
        let allowed = Int((budget * Double(cleanEvents) / 10_000).rounded(.down))
        func falseAlarms(_ threshold: Double) -> Int {
            unswitched.reduce(0) { $0 + alarms(statistics[$1], threshold: threshold).count }
        }
        var low = -64.0, high = 1.0
        if fixed == nil {
            while falseAlarms(high) > allowed && high < 1e9 { high *= 2 }
            for _ in 0..<40 {
                let middle = (low + high) / 2
                if falseAlarms(middle) > allowed { low = middle } else { high = middle }
            }
        }
        let threshold = fixed ?? high
        var delays: [Double] = [], first: [(stream: Int, alarm: Int)] = []
        for index in switched {
            guard let at = streams[index].switchIndex,
                  let alarm = alarms(statistics[index], threshold: threshold).first(where: { $0 >= at && $0 < at + window })
            else { continue }
            delays.append(Double(alarm - at + 1))
            first.append((index, alarm))
        }
        delays.sort()
        return Detection(
            threshold: threshold, switches: switched.count,
            rate: switched.isEmpty ? 0 : Double(delays.count) / Double(switched.count),
            falseAlarmsPer10k: cleanEvents == 0 ? 0 : Double(falseAlarms(threshold)) * 10_000 / Double(cleanEvents),
            delayP50: delays.isEmpty ? nil : delays[delays.count / 2],
            delayP90: delays.isEmpty ? nil : delays[min(delays.count - 1, delays.count * 9 / 10)], firstAlarms: first)
    }

    /// Real-sequence switches: each evaluated user's stream continues, at a random point, with another
    /// evaluated user's stream (ground truth = the switch point); the other half stay unswitched.
    package static func spliced(_ users: [EventSequence], raw: [[Int32]]? = nil, seed: UInt64,
                                minimumPrefix: Int = 15) -> [Stream] {
        var random = SplitMix64(seed: seed)
        let rawUsers = raw ?? users.map(\.categories)
        precondition(rawUsers.count == users.count, "one raw sequence per user")
        let eligibleIndices = users.indices.filter { users[$0].count >= minimumPrefix + 10 }
        let eligible = eligibleIndices.map { users[$0] }, eligibleRaw = eligibleIndices.map { rawUsers[$0] }
        var streams: [Stream] = []
        for (index, user) in eligible.enumerated() {
            let actions = user.actions.isEmpty ? [UInt8](repeating: 0, count: user.count) : user.actions
            if index % 2 == 1 || eligible.count < 2 {
                streams.append(Stream(categories: user.categories, raw: eligibleRaw[index], actions: actions,
                                      switchIndex: nil))
                continue
            }
            let otherIndex = (index + 1 + Int(random.next() % UInt64(eligible.count - 1))) % eligible.count
            let other = eligible[otherIndex]
            let otherActions = other.actions.isEmpty ? [UInt8](repeating: 0, count: other.count) : other.actions
            let at = minimumPrefix + Int(random.next() % UInt64(max(1, user.count - minimumPrefix - 5)))
            let continuation = min(other.count, 40)
            streams.append(Stream(categories: Array(user.categories.prefix(at)) + other.categories.suffix(continuation),
                                  raw: Array(eligibleRaw[index].prefix(at)) + eligibleRaw[otherIndex].suffix(continuation),
                                  actions: Array(actions.prefix(at)) + otherActions.suffix(continuation),
                                  switchIndex: at))
        }
        return streams
    }
}

extension DriftEvaluation {
    /// Simulated shoppers' streams with the simulator's injected shifts as ground truth, and the
    /// training sequences of a disjoint set of simulated shoppers (for the detector's model).
    package static func simulatorWorkload(users: Int, seed: UInt64, shape: LSTMShape,
                                          progress: ProgressReporter = .silent)
        -> (streams: [Stream], training: [EventSequence], rawTraining: [[Int32]], rawCategories: Int,
            outOfVocabulary: Int32)
    {
        var parameters = ShopperSimulator.Parameters()
        parameters.users = users
        parameters.seed = seed
        let output = ShopperSimulator(parameters: parameters).run(progress: progress)
        var items: [UInt64: Set<UInt64>] = [:]
        CategoryCatalog.itemsPerCategory(output.events, into: &items)
        let catalog = CategoryCatalog(itemsPerCategory: items.mapValues(\.count), categories: shape.categories)
        let full = CategoryCatalog(itemsPerCategory: items.mapValues(\.count), categories: items.count + 1)
        let shiftIndex = Dictionary(output.shifts.map { ($0.user, $0.eventIndex) }, uniquingKeysWith: { first, _ in first })
        var byUser: [UInt64: [BehaviorEvent]] = [:]
        for event in output.events { byUser[event.user, default: []].append(event) }
        var streams: [Stream] = [], training: [EventSequence] = [], rawTraining: [[Int32]] = []
        for user in byUser.keys.sorted() {
            guard let events = byUser[user] else { continue }
            let sequence = EventSequence(events: events, catalog: catalog)
            let raw = events.map { full.modelIndex(of: $0.category) }
            if user % 2 == 0 {
                training.append(EventSequence(categories: Array(sequence.categories.suffix(50)),
                                              actions: Array(sequence.actions.suffix(50)), gaps: Array(sequence.gaps.suffix(50))))
                rawTraining.append(raw)
            } else {
                streams.append(Stream(categories: sequence.categories, raw: raw, actions: sequence.actions,
                                      switchIndex: shiftIndex[user]))
            }
        }
        return (streams, training, rawTraining, full.categories, catalog.outOfVocabulary)
    }
}
