package import FedIO
import Foundation
package import Logging
package import ServiceLifecycle

/// A backstop for memory that no per-peer bound can reach: libzmq keeps a multipart message's frames until
/// its last one arrives, and counts only whole messages against the high-water marks, so a client whose key
/// is enrolled can send a message that never ends and have it held in full (docs/SECURITY.md, "Memory").
/// Every ``interval`` this service reads the process's resident memory; above ``limitBytes`` it closes every
/// connection on the listening sockets it watches (``ZMQChannel/dropConnections()``), which discards what
/// they had queued, and hands the freed pages back. Honest peers reconnect by themselves (their protocol
/// carries on: a round's messages are re-sent after a reconnect).
///
/// When dropping the connections frees nothing (the memory is the node's own data, not a peer's), the limit
/// is too low for this node: that is logged once, and connections are dropped again only when memory grows
/// a further quarter.
package struct MemoryGuard: Service {
    package let limitBytes: Int
    package let channels: [(name: String, channel: ZMQChannel)]
    package let logger: Logger
    /// How often resident memory is read (one small `/proc` read): on loopback a client can push gigabytes a second,
    /// so the overshoot past the limit is about this long at the link's speed.
    package var interval: Duration = .milliseconds(20)
    /// Called after each time connections were dropped (a metric).
    package var onDrop: @Sendable () -> Void = {}

    package init(limitMiB: Int, channels: [(name: String, channel: ZMQChannel)], logger: Logger,
                 onDrop: @escaping @Sendable () -> Void = {}) {
        limitBytes = limitMiB << 20
        self.channels = channels
        self.logger = logger
        self.onDrop = onDrop
    }

    package func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                var futileAbove: Int?  // resident memory after a drop that freed too little
                while true {
                    try await Task.sleep(for: interval)
                    guard let resident = ProcessMemory.residentBytes() else { continue }
                    guard resident > limitBytes else {
                        futileAbove = nil
                        continue
                    }
                    if let futileAbove, resident < futileAbove + futileAbove / 4 { continue }
                    logger.error("Resident memory above memory_limit_mib: closing every client connection (they reconnect)", metadata: [
                        "resident.mib": "\(resident >> 20)", "limit.mib": "\(limitBytes >> 20)",
                        "sockets": "\(channels.map(\.name).joined(separator: ","))",
                    ])
                    for (_, channel) in channels { await channel.dropConnections() }
                    onDrop()
                    // libzmq frees the connections' buffers on its own threads, just after.
                    try await Task.sleep(for: .milliseconds(200))
                    ProcessMemory.releaseFreeMemory()
                    let after = ProcessMemory.residentBytes() ?? resident
                    if after > limitBytes {
                        futileAbove = after
                        logger.warning("""
                            Resident memory is still above memory_limit_mib after closing the connections: it is this \
                            node's own data, not a client's; raise memory_limit_mib
                            """, metadata: ["resident.mib": "\(after >> 20)", "limit.mib": "\(limitBytes >> 20)"])
                    } else {
                        logger.notice("Memory freed by closing the connections", metadata: [
                            "resident.mib": "\(after >> 20)", "freed.mib": "\((resident - after) >> 20)",
                        ])
                    }
                }
            }
        } catch is CancellationError {
            // Graceful shutdown ends the sleep.
        }
    }
}
