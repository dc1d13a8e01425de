import FedModel
import Foundation
import Testing

@testable import FedLogic

@Suite("Switch detector (truncated BOCPD over category changes)")
struct SwitchDetectorTests {
    /// 40 categories, equally common in the population.
    private static let detector = SwitchDetector(prior: [Double](repeating: 1.0 / 40, count: 40))

    /// A loyal shopper: `events` events cycling over categories 0, 1, 2 with runs of repeats.
    private static func loyal(_ events: Int, seed: UInt64) -> [Int32] {
        var random = SplitMix64(seed: seed)
        return (0..<events).map { _ in Int32(random.next() % 3) }
    }

    /// The highest statistic over `categories`, fed after `history`.
    private static func peak(after history: [Int32], of categories: [Int32],
                             detector: SwitchDetector = detector) -> Double {
        var state = SwitchDetector.UserState()
        for category in history { detector.update(&state, category: category) }
        return categories.map { detector.update(&state, category: $0) }.max() ?? 0
    }

    @Test("A switch to categories the shopper never returns from raises the score; staying with the old ones does not")
    func switchAgainstControl() {
        let history = Self.loyal(60, seed: 1)
        let switched: [Int32] = [20, 21, 20, 22, 23, 21, 24, 22, 25, 23, 20, 26]
        let stayed = Array(Self.loyal(72, seed: 2).suffix(12))
        let afterSwitch = Self.peak(after: history, of: switched)
        let control = Self.peak(after: history, of: stayed)
        #expect(afterSwitch > 3, "a switch should be evident: peak \(afterSwitch)")
        #expect(control < 1, "an ordinary stretch should not be: peak \(control)")
    }

    @Test("A repeat of the previous category is no evidence: the score does not move")
    func repeatsAreNeutral() {
        var state = SwitchDetector.UserState()
        for category in Self.loyal(40, seed: 3) + [30, 31] { Self.detector.update(&state, category: category) }
        let before = state.score
        for _ in 0..<5 { #expect(Self.detector.update(&state, category: 31) == before) }
    }

    @Test("The run-length posterior stays a distribution", arguments: [1, 5, 20])
    func posteriorNormalised(runLengths: Int) {
        var settings = SwitchDetector.Settings()
        settings.runLengths = runLengths
        let detector = SwitchDetector(settings: settings, prior: [Double](repeating: 1.0 / 40, count: 40))
        var state = SwitchDetector.UserState()
        var random = SplitMix64(seed: UInt64(runLengths))
        for _ in 0..<500 {
            detector.update(&state, category: Int32(random.next() % 40))
            let posterior = state.logPosterior
            let total = posterior.runs.map(exp).reduce(exp(posterior.long), +)
            #expect(abs(total - 1) < 1e-9)
            #expect(!state.score.isNaN && state.score < .infinity)
        }
    }

    @Test("Each completed excursion raises the shopper's offset by the penalty; without a penalty it stays 0")
    func explorerOffset() {
        func offset(penalty: Double) -> Double {
            var settings = SwitchDetector.Settings()
            settings.excursionPenalty = penalty
            let detector = SwitchDetector(settings: settings, prior: [Double](repeating: 1.0 / 40, count: 40))
            var state = SwitchDetector.UserState()
            // Loyal stretches with excursions through eight new categories, then back.
            for round in 0..<4 {
                for category in Self.loyal(30, seed: UInt64(round)) { detector.update(&state, category: category) }
                for offset in 0..<8 { detector.update(&state, category: Int32(8 + 8 * round + offset)) }
            }
            for category in Self.loyal(30, seed: 99) { detector.update(&state, category: category) }
            return state.offset
        }
        #expect(offset(penalty: 0) == 0)
        let explorer = offset(penalty: 1)
        #expect(explorer >= 2, "excursions should have been counted: offset \(explorer)")
        #expect(explorer == explorer.rounded(), "the offset is a whole number of penalties")
    }

    @Test("No evidence during warm-up or without a category change: −∞, below any threshold")
    func warmUp() {
        var state = SwitchDetector.UserState()
        for (index, category) in [Int32](0..<10).enumerated() {
            #expect(Self.detector.update(&state, category: category) == -.infinity, "event \(index + 1)")
        }
        var loyal = SwitchDetector.UserState()
        for _ in 0..<40 { #expect(Self.detector.update(&loyal, category: 7) == -.infinity) }
        #expect(AlertRule().alarms([Double](repeating: -.infinity, count: 50), threshold: -1_000).isEmpty)
    }

    @Test("Settings decode from the keys given, keep defaults for the rest, and name a key out of range")
    func settingsDecoding() throws {
        let decoded = try JSONDecoder().decode(SwitchDetector.Settings.self, from: Data(#"{"run_lengths": 30, "hazard": 0.01}"#.utf8))
        var expected = SwitchDetector.Settings()
        expected.runLengths = 30
        expected.hazard = 0.01
        #expect(decoded == expected)
        #expect {
            try JSONDecoder().decode(SwitchDetector.Settings.self, from: Data(#"{"hazard": 1.5}"#.utf8))
        } throws: { error in
            "\(error)".contains("hazard")
        }
    }

    @Test("The prior is the smoothed share of users touching each category")
    func prior() {
        let prior = SwitchDetector.prior(usersTouching: [3, 0, 1], users: 4)
        #expect(prior == [3.5 / 5.5, 0.5 / 5.5, 1.5 / 5.5])
    }
}
