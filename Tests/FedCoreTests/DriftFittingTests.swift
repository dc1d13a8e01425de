@testable import FedLogic
@testable import FedModel
@testable import FedTools
import FedNode
import Foundation
import Testing

@Suite("fit-drift: label-free fitting of the switch detector")
struct DriftFittingTests {
    /// Synthetic shoppers: each returns to 4 favourite categories of 200, with 20 % exploration.
    private static func shoppers(_ count: Int, seed: UInt64) -> [EventSequence] {
        var random = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            let favourites = (0..<4).map { _ in Int32(random.next() % 200) }
            let length = 60 + Int(random.next() % 60)
            return EventSequence(categories: (0..<length).map { _ in
                random.nextUnit() < 0.2 ? Int32(random.next() % 200) : favourites[Int(random.next() % 4)]
            })
        }
    }

    @Test("Folds are a fixed, balanced function of the user id")
    func folds() {
        let ids = (0..<20_000).map { UInt64($0) &* 7_919 &+ 13 }
        let ones = ids.filter { DriftFitting.fold(of: $0) == 1 }.count
        #expect((9_600...10_400).contains(ones), "fold 1 holds \(ones) of 20,000")
        #expect(ids.prefix(100).map(DriftFitting.fold(of:)) == ids.prefix(100).map(DriftFitting.fold(of:)))
    }

    // CPU-bound for seconds: on a thread of its own, never one of the cooperative pool's two.
    @Test("From deliberately poor settings the search finds better ones, and reports what measure() measures")
    func fitImproves() async throws {
        try await onDedicatedThread { Self.checkFitImproves() }
    }

    private static func checkFitImproves() {
        let users = shoppers(200, seed: 4)
        let streams = DriftEvaluation.spliced(users, seed: 9)
        let prior = DriftEvaluation.prior(from: users.map(\.categories), categories: 200)
        var poor = SwitchDetector.Settings()
        poor.noveltyConcentration = 48
        poor.hazard = 0.002
        poor.recencyWeight = 0.6
        let result = DriftFitting.fit(streams: streams, prior: prior, budget: 50, start: poor, passes: 1)
        #expect(result.detection.rate >= result.initial.rate + 0.05,
                "fitted \(result.detection.rate) vs start \(result.initial.rate)")
        #expect(result.settings != poor && result.evaluations > 10)
        #expect(DriftFitting.measure(result.settings, streams: streams, prior: prior, budget: 50) == result.detection)
        // The threshold it found keeps the unswitched streams within the budget.
        #expect(result.detection.falseAlarmsPer10k <= 50)
    }
}
