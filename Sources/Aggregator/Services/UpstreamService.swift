import FedNode
import Logging
import ServiceLifecycle

/// A regional aggregator's membership of the global federation: the ``AgentSession`` whose worker runs each global
/// round as a regional round (``RegionalRoundWorker``) and forwards its sum.
struct UpstreamService: Service {
    let session: AgentSession

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await session.run() }
        } catch is CancellationError {
            // Graceful shutdown.
        }
    }
}
