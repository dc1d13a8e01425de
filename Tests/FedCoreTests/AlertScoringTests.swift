@testable import FedLogic
@testable import FedTools
import Foundation
import Testing

@Suite("Alerts scored against the simulator's ground truth")
struct AlertScoringTests {
    private static func alert(_ user: UInt64, _ time: Int64, _ kind: DriftAlert.Kind) -> DriftAlert {
        DriftAlert(id: "r-\(time)", user: user, region: "r", time: time, score: 1, threshold: 0, kind: kind,
                   emerging: [], fading: [], events: nil, modelVersion: 1, recommendations: [], explanation: "")
    }

    @Test("True alerts match their shopper's change of the same kind within the window; delays count events or hours")
    func figures() {
        let day: Int64 = 86_400, live: Int64 = 10 * day
        let truth = [
            ShopperSimulator.Shift(kind: .interestShift, user: 1, time: live + day, eventIndex: 0, fadingCategories: [],
                                   emergingCategories: []),
            ShopperSimulator.Shift(kind: .interestShift, user: 2, time: live + day, eventIndex: 0, fadingCategories: [],
                                   emergingCategories: []),
            ShopperSimulator.Shift(kind: .disengagement, user: 3, time: live, eventIndex: 0, fadingCategories: [],
                                   emergingCategories: []),
            // Before the live stream: not a live change, but an alert on it is still true.
            ShopperSimulator.Shift(kind: .interestShift, user: 4, time: live - day, eventIndex: 0, fadingCategories: [],
                                   emergingCategories: []),
        ]
        let alerts = [
            Self.alert(1, live + day + 3_600, .interestShift),      // true: the 3rd event after the shift
            Self.alert(1, live + day + 7_200, .interestShift),      // true again (same change, not a new catch)
            Self.alert(2, live + 5 * day, .interestShift),           // false: 4 days after, outside the window
            Self.alert(2, live + day + 60, .churnRisk),              // false: the wrong kind
            Self.alert(3, live + 2 * day, .churnRisk),               // true: 48 h after disengaging
            Self.alert(5, live + day, .interestShift),               // false: no change at all
            Self.alert(4, live, .interestShift),                     // true, on a change before the live stream
        ]
        let times: [UInt64: [Int64]] = [1: [live + day - 60, live + day, live + day + 1_800, live + day + 3_600, live + day + 9_000]]
        let scoring = AlertScoring(region: "r", alerts: alerts, truth: truth, eventTimes: times, liveFrom: live,
                                   thresholds: AlertThresholds(interestShift: -1.5, churnRisk: 4))
        #expect(scoring.alerts == 7 && scoring.trueAlerts == 4)
        #expect(scoring.interestShift.alerts == 5 && scoring.interestShift.trueAlerts == 3)
        #expect(scoring.churnRisk.alerts == 2 && scoring.churnRisk.trueAlerts == 1)
        #expect(scoring.changesLive == 3 && scoring.changesCaught == 2)
        #expect(scoring.interestShift.changesLive == 2 && scoring.interestShift.changesCaught == 1)
        #expect(scoring.delayP50 == 3 && scoring.churnRisk.delayP50 == 48)
        #expect(scoring.precision == 4.0 / 7 && scoring.recall == 2.0 / 3)
        #expect(scoring.threshold == -1.5 && scoring.churnThreshold == 4)
        // The demo's summary.json keys.
        let json = String(decoding: (try? JSONEncoder().encode(scoring)) ?? Data(), as: UTF8.self)
        for key in ["\"alerts\"", "\"true_alerts\"", "\"changes_live\"", "\"changes_caught\"", "\"delay_p50\"", "\"threshold\""] {
            #expect(json.contains(key), "\(key) in \(json)")
        }
    }
}
