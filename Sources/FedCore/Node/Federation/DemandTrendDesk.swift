package import FedLogic
import Synchronization

/// The aggregator's demand trends: each round, the agents' demand releases (``DemandRelease``: one per
/// agent and round, of the model's category count), then at the round's close the detector over every
/// region and their sum (``DemandTrendDetector``). Warnings are returned for the round's report, the
/// log, the dashboard and `/metrics`.
package final class DemandTrendDesk: Sendable {
    private struct State {
        var round: UInt64 = 0
        var releases: [String: DemandRelease] = [:]
        var detector = DemandTrendDetector()
    }

    private let state = Mutex(State())
    /// Model categories (the catalog's size): a release of another length is refused.
    package let categories: Int

    /// The most shoppers one release may count (the users all agents may sample in a round), plus noise.
    package let maxShoppers: Double

    package init(categories: Int, settings: DemandTrendDetector.Settings = .init(), maxUsers: Int = 1_000_000) {
        self.categories = categories
        maxShoppers = Double(maxUsers)
        state.withLock { $0.detector = DemandTrendDetector(settings: settings) }
    }

    /// Keeps `release` from `agentID` for its round; refuses (returns a reason) a wrong length, counts
    /// that are not finite or beyond `maxShoppers` (with room for the release noise, however large its
    /// multiplier: an honest noised count stays within 100 of its noise's standard deviations), a second
    /// release of the same agent in the round, or one for an older round.
    package func record(_ release: DemandRelease, from agentID: String, openRound: UInt64?) -> String? {
        guard release.counts.count == categories else {
            return "\(release.counts.count) categories, the model has \(categories)"
        }
        let limit = maxShoppers + 100 * max(1, release.noiseMultiplier)
        guard release.noiseMultiplier.isFinite, release.noiseMultiplier >= 0,
              ([release.shoppers] + release.counts).allSatisfy({ $0.isFinite && abs($0) <= limit }) else {
            return "counts not finite or beyond \(limit) shoppers, or a noise multiplier of \(release.noiseMultiplier)"
        }
        guard let openRound, release.round == openRound else { return "round \(release.round) is not open" }
        return state.withLock { state in
            if state.round != release.round { (state.round, state.releases) = (release.round, [:]) }
            guard state.releases[agentID] == nil else { return "a second demand release in round \(release.round)" }
            state.releases[agentID] = release
            return nil
        }
    }

    /// Runs the detector on round `round`'s releases (each region, then their sum); returns its warnings
    /// and how many regions released. Model category indices stand for the categories.
    package func close(round: UInt64) -> (warnings: [DemandTrendWarning], regions: Int) {
        state.withLock { state in
            guard state.round == round, !state.releases.isEmpty else { return ([], 0) }
            var warnings: [DemandTrendWarning] = []
            var total = [Double](repeating: 0, count: categories), shoppers = 0.0, variance = 0.0
            for (agent, release) in state.releases.sorted(by: { $0.key < $1.key }) {
                var counts: [UInt64: Double] = [:]
                for (index, count) in release.counts.enumerated() { counts[UInt64(index)] = count }
                let noise = release.noiseMultiplier * release.noiseMultiplier
                warnings += state.detector.observe(period: Int(round), region: agent, counts: counts,
                                                   shoppers: release.shoppers, noiseVariance: noise)
                for (index, count) in release.counts.enumerated() { total[index] += count }
                shoppers += release.shoppers
                variance += noise
            }
            if state.releases.count > 1 {
                var counts: [UInt64: Double] = [:]
                for (index, count) in total.enumerated() { counts[UInt64(index)] = count }
                warnings += state.detector.observe(period: Int(round), region: DemandTrendDetector.allRegions,
                                                   counts: counts, shoppers: shoppers, noiseVariance: variance)
            }
            let regions = state.releases.count
            state.releases = [:]
            return (warnings, regions)
        }
    }
}
