@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
import Foundation
import TestSupport
import Testing

/// An enrolled agent ("mallory", played in-process with its real keys) floods the aggregator with model
/// requests and never reads the replies, while an honest agent takes part in the rounds.
@Suite("Floods from an enrolled agent", .serialized, .timeLimit(.minutes(4)))
struct FloodTests {
    /// Resident memory of `pid` in MiB (VmRSS).
    static func residentMiB(_ pid: Int32) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kB = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else {
            return .nan
        }
        return kB / 1024
    }

    @Test("1,500 model requests never read: the aggregator's memory stays bounded and the honest agent's rounds complete")
    func modelRequestFlood() async throws {
        let agents = [(id: "region-1", users: 30), (id: "mallory", users: 5)]
        let federation = try await Federation(agents: agents, enrolled: agents.map(\.id), aggregatorSettings: """
            rounds: {min_agents: 1, timeout_seconds: 20, sampling_rate: 1.0, clip_norm: 1.0, sequence_length: 20}

            """)
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml", "--rounds", "3"])
        defer { aggregator.terminate() }
        let honest = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        defer { honest.terminate() }

        let mallory = try EnrolledClient(federation, agentID: "mallory")
        let channel = mallory.channel, sealer = mallory.sealer
        defer { channel.close() }
        func send<M: WireMessage>(_ message: M) async throws {
            try await channel.send([.bytes(WireHeader(kind: M.kind).bytes),
                                    .block(sealer.seal(message.encoded(), kind: M.kind.rawValue, round: 0))])
        }
        // Registered once, so that the aggregator knows the peer; after that mallory never reads.
        try await send(Hello(agentID: "mallory", softwareVersion: "test", sentAtMilliseconds: 0))
        _ = try await channel.receive(timeout: .seconds(20))
        let pid = aggregator.process.processIdentifier
        try await Task.sleep(for: .seconds(1))
        let before = Self.residentMiB(pid)
        for _ in 0..<1_500 { try await send(ModelRequest(heldVersion: 0)) }
        // Time for the aggregator to take every request (each would queue a whole model for mallory).
        var peak = before
        for _ in 0..<20 {
            try await Task.sleep(for: .milliseconds(500))
            peak = max(peak, Self.residentMiB(pid))
        }
        let model = Double(ModelFile.encode(LSTMParameters<Float>(shape: .small, seed: 1), modelVersion: 0).count) / 1_048_576
        print(String(format: "aggregator RSS %.0f MiB before the flood, peak %.0f MiB during it (one model: %.2f MiB)",
                     before, peak, model))
        #expect(peak - before < 64, "the aggregator's memory grew by \(peak - before) MiB under the flood")
        // The honest agent's rounds were not held up behind mallory's unread replies.
        let status = await aggregator.waitForExit(seconds: 90)
        #expect(status == 0, "the aggregator did not finish its 3 rounds: \(aggregator.output.suffix(2_000))")
    }
}
