import Foundation
import Synchronization

/// Bounds what model requests can cost the aggregator: each agent gets a whole model at most ``burst``
/// times per model version every ``interval``. An enrolled agent that floods requests and never reads the replies
/// would otherwise queue a model per request for it (1,500 requests held ≈ 143 MiB of the small model in
/// `FloodTests`); an honest agent asks again after a reconnect or a lost transfer (twice within seconds
/// when the aggregator restarts), and a new model version is always served.
package final class ModelTransferGate: Sendable {
    private struct Sent {
        var version: UInt64
        var at: ContinuousClock.Instant
        var transfers = 1
        /// Requests ignored since the last transfer.
        var ignored = 0
    }

    package let interval: Duration
    package let burst: Int
    private let sent = Mutex<[String: Sent]>([:])

    package init(interval: Duration = .seconds(10), burst: Int = 3) {
        self.interval = interval
        self.burst = burst
    }

    /// Whether `agentID` may be sent model `version` at `now` (recorded as sent when true). When false,
    /// `firstIgnored` says whether this is the first request ignored since the last transfer (log it once).
    package func admit(_ agentID: String, version: UInt64, at now: ContinuousClock.Instant)
        -> (admitted: Bool, firstIgnored: Bool)
    {
        sent.withLock { sent in
            guard var last = sent[agentID], last.version == version, now - last.at < interval else {
                sent[agentID] = Sent(version: version, at: now)
                return (true, false)
            }
            if last.transfers < burst {
                last.transfers += 1
                sent[agentID] = last
                return (true, false)
            }
            last.ignored += 1
            sent[agentID] = last
            return (false, last.ignored == 1)
        }
    }
}
