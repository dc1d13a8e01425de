import FedNode
import Logging
import ServiceLifecycle

/// Keeps a highly available aggregator's lease: renews it every third of `postgres.lease_seconds`, each renewal
/// given up after another third. A renewal that fails — another aggregator took over, or the database cannot be
/// reached — throws, which stops every service and the process: it must not serve agents once it may no longer
/// commit their rounds (its writes would be refused by the fencing token anyway). A graceful stop returns.
struct LeaseService: Service {
    let store: PostgresStateStore
    let logger: Logger

    func run() async throws {
        let third = Duration.milliseconds(Int64(store.configuration.leaseSeconds * 1000 / 3))
        do {
            try await cancelWhenGracefulShutdown {
                while true {
                    try await Task.sleep(for: third)
                    try await store.renew(within: third)
                }
            }
        } catch is CancellationError {
            return
        } catch {
            logger.critical("Stopping: this aggregator can no longer lead", metadata: ["error": "\(error)"])
            throw error
        }
    }
}
