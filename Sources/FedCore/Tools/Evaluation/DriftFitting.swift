package import FedLogic
import FedModel
package import FedNode
import Foundation

/// `edge-agent fit-drift`: chooses the switch detector's settings for a population by coordinate
/// search, maximising detection of spliced switches (a user's stream continued by another user's — no
/// labels needed, so an agent can fit on its own history) at an alert budget, with the false alarms
/// counted on the unswitched streams exactly as `evaluate-drift` counts them.
///
/// Users are split in two folds by a hash of their id (``fold(of:)``): fitting reads fold 0 only, and
/// `evaluate-drift` reports on fold 1, so reported figures are never on users the settings saw.
package enum DriftFitting {
    /// The fold (0 or 1) of a user id: the low bit of a SplitMix64 finalizer of the id, so that the
    /// split is fixed, independent of file order, and balanced.
    package static func fold(of user: UInt64) -> Int {
        var z = user &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Int((z ^ (z >> 31)) & 1)
    }

    /// The values tried for each setting (the current value is always among the candidates).
    static let grid: [(key: SwitchDetector.Settings.CodingKeys, values: [Double])] = [
        (.noveltyConcentration, [2, 4, 8, 16, 24, 48]),
        (.noveltyDiscount, [0.3, 0.5, 0.7, 0.9]),
        (.recencyWeight, [0.1, 0.2, 0.4, 0.6]),
        (.recencyDecay, [0.4, 0.6, 0.8]),
        (.hazard, [0.002, 0.005, 0.01, 0.02]),
        (.excursionPenalty, [0, 0.5, 1, 2]),
        (.excursionLevel, [0.5, 1, 2]),
        (.segmentDecay, [0.95, 0.99, 1]),
        (.profileDecay, [0.97, 0.99, 0.995]),
        (.runLengths, [10, 20, 30]),
    ]

    static func with(_ settings: SwitchDetector.Settings, _ key: SwitchDetector.Settings.CodingKeys,
                     _ value: Double) -> SwitchDetector.Settings {
        var changed = settings
        switch key {
        case .noveltyConcentration: changed.noveltyConcentration = value
        case .noveltyDiscount: changed.noveltyDiscount = value
        case .recencyWeight: changed.recencyWeight = value
        case .recencyDecay: changed.recencyDecay = value
        case .hazard: changed.hazard = value
        case .excursionPenalty: changed.excursionPenalty = value
        case .excursionLevel: changed.excursionLevel = value
        case .segmentDecay: changed.segmentDecay = value
        case .profileDecay: changed.profileDecay = value
        case .runLengths: changed.runLengths = Int(value)
        case .noveltyCap, .recencyLength, .warmUp, .profileCapacity: break
        }
        return changed
    }

    /// Detection of the switch detector with `settings` at `budget` (alarms per 10k events on the
    /// unswitched streams), over the streams' whole-vocabulary categories.
    package static func measure(_ settings: SwitchDetector.Settings, streams: [DriftEvaluation.Stream],
                                prior: [Double], budget: Double, threshold: Double? = nil) -> DriftEvaluation.Detection {
        let detector = SwitchDetector(settings: settings, prior: prior)
        let statistics = streams.map { stream -> [Double] in
            var state = SwitchDetector.UserState()
            return stream.raw.map { detector.update(&state, category: $0) }
        }
        return DriftEvaluation.detection(statistics: statistics, streams: streams, budget: budget, threshold: threshold)
    }

    package struct Result: Sendable {
        package var settings: SwitchDetector.Settings
        package var detection: DriftEvaluation.Detection
        package var initial: DriftEvaluation.Detection
        package var evaluations: Int
    }

    /// Coordinate search from `start`: each pass tries every grid value of every setting, keeps a change
    /// when it raises detection by more than `minimumGain` (delay breaks ties), and stops after a pass
    /// without one (or `passes` passes). With `maxDelay`, settings whose median delay is within it come
    /// first (a candidate that meets it beats one that does not, whatever their detection).
    ///
    /// - Parameter progress: one phase per pass counting the grid's candidates; the start and each kept
    ///   change are notes above the bar.
    package static func fit(streams: [DriftEvaluation.Stream], prior: [Double], budget: Double,
                            start: SwitchDetector.Settings = .init(), passes: Int = 3, minimumGain: Double = 0.005,
                            maxDelay: Double? = nil, progress: ProgressReporter = .silent) -> Result {
        func meets(_ a: DriftEvaluation.Detection) -> Bool {
            guard let maxDelay else { return true }
            return (a.delayP50 ?? .infinity) <= maxDelay
        }
        func better(_ a: DriftEvaluation.Detection, than b: DriftEvaluation.Detection) -> Bool {
            if meets(a) != meets(b) { return meets(a) }
            if a.rate > b.rate + minimumGain { return true }
            return a.rate >= b.rate - 1e-12 && (a.delayP50 ?? .infinity) < (b.delayP50 ?? .infinity) && a.rate > 0
        }
        var best = start, bestDetection = measure(start, streams: streams, prior: prior, budget: budget)
        let initial = bestDetection
        var evaluations = 1
        progress.note(String(format: "start: %.1f%% detected at %.0f/10k", 100 * initial.rate, budget))
        let candidates = grid.reduce(0) { $0 + $1.values.count }
        for pass in 1...max(1, passes) {
            var improved = false
            progress.begin("pass \(pass) of at most \(max(1, passes))", total: candidates, unit: "candidates")
            for (key, values) in grid {
                for value in values {
                    defer { progress.advance() }             // the current value is counted, not measured
                    let candidate = with(best, key, value)
                    guard candidate != best, candidate.validationProblem == nil else { continue }
                    let detection = measure(candidate, streams: streams, prior: prior, budget: budget)
                    evaluations += 1
                    if better(detection, than: bestDetection) {
                        (best, bestDetection, improved) = (candidate, detection, true)
                        progress.note(String(format: "pass %d: %@ = %g → %.1f%% detected, delay p50 %@", pass,
                                             key.rawValue, value, 100 * detection.rate,
                                             detection.delayP50.map { "\(Int($0))" } ?? "-"))
                    }
                }
            }
            progress.finish()
            if !improved { break }
        }
        return Result(settings: best, detection: bestDetection, initial: initial, evaluations: evaluations)
    }
}
