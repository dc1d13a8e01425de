@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
import Foundation
import TestSupport
import Testing

/// Issue 15, item 4: resource abuse by clients that hold an enrolled key. Each test measures the target
/// process's resident memory (VmRSS) under the abuse while an honest agent keeps working.
@Suite("Resource abuse by enrolled clients: bounded memory, honest work goes on", .serialized, .timeLimit(.minutes(6)))
struct ResourceAbuseTests {
    static func residentMiB(_ pid: Int32) -> Double { FloodTests.residentMiB(pid) }

    static func openDescriptors(_ pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    /// Samples `pid`'s resident memory every 50 ms for `seconds`, or until it is `stopAbove` MiB; returns the peak.
    static func peakMiB(_ pid: Int32, seconds: Double, stopAbove: Double = .infinity) async throws -> Double {
        var peak = residentMiB(pid)
        let end = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < end, peak < stopAbove {
            try await Task.sleep(for: .milliseconds(50))
            peak = max(peak, residentMiB(pid))
        }
        return peak
    }

    /// region-1 (honest) and mallory, both enrolled; the aggregator with `memory_limit_mib: limit`.
    static func federation(memoryLimitMiB: Int) async throws -> Federation {
        let agents = [(id: "region-1", users: 30), (id: "mallory", users: 5)]
        return try await Federation(agents: agents, enrolled: agents.map(\.id), aggregatorSettings: """
            rounds: {min_agents: 1, timeout_seconds: 6, sampling_rate: 1.0, clip_norm: 1.0, sequence_length: 20}
            memory_limit_mib: \(memoryLimitMiB)

            """)
    }

    /// Mallory sends three messages of 1,024 frames of 1 MiB each. Every frame is within
    /// `max_message_bytes`, and libzmq holds a multipart message until its last frame, outside the
    /// high-water marks: 1 GiB per message reaches the aggregator's memory before it can refuse anything.
    /// Returns the aggregator's peak resident memory.
    /// `seconds`: how long to watch; on a busy machine decrypting 1 GiB takes a while (the control watches
    /// until the whole message is held, up to a minute).
    static func chunkedFlood(_ federation: Federation, aggregator: ChildProcess, seconds: Double = 12,
                             stopAbove: Double = .infinity) async throws -> (before: Double, peak: Double) {
        let mallory = try EnrolledClient(federation, agentID: "mallory")
        defer { mallory.channel.close() }
        let pid = aggregator.process.processIdentifier
        try await Task.sleep(for: .seconds(1))
        let before = residentMiB(pid)
        let frame = ByteBlock(count: 1 << 20) { $0.initializeMemory(as: UInt8.self, repeating: 0x5a) }
        let message = [OutboundFrame](repeating: .block(frame), count: 1_024)
        async let peak = peakMiB(pid, seconds: seconds, stopAbove: before + stopAbove)
        for _ in 0..<3 { try await mallory.channel.send(message) }
        return (before, try await peak)
    }

    @Test("Oversized chunked messages from an enrolled agent: the memory guard holds the aggregator near memory_limit_mib and the honest agent's rounds complete; control: without it, 1 GiB is held")
    func chunkedMessagesAreBounded() async throws {
        let limit = 320
        let federation = try await Self.federation(memoryLimitMiB: limit)
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml", "--rounds", "8"])
        defer { aggregator.terminate() }
        let honest = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        defer { honest.terminate() }
        #expect(await aggregator.waitForOutput("Listening for enrolled agents", seconds: 30), "\(aggregator.output)")

        let (before, peak) = try await Self.chunkedFlood(federation, aggregator: aggregator)
        let after = Self.residentMiB(aggregator.process.processIdentifier)
        print(String(format: "guarded aggregator (memory_limit_mib %d): RSS %.0f MiB before, peak %.0f MiB, %.0f MiB after",
                     limit, before, peak, after))
        for line in aggregator.output.split(separator: "\n") where line.contains("memory_limit_mib") || line.contains("Memory freed") {
            print("  guard: \(line)")
        }
        #expect(aggregator.output.contains("Resident memory above memory_limit_mib"), "\(aggregator.output.suffix(3_000))")
        #expect(peak < Double(limit) + 128, "the guard let the aggregator reach \(peak) MiB")
        #expect(after < Double(limit), "memory was not given back: \(after) MiB")
        // The honest agent reconnected by itself and the federation finished its rounds.
        let status = await aggregator.waitForExit(seconds: 120)
        #expect(status == 0, "the aggregator did not finish its rounds: \(aggregator.output.suffix(3_000))")

        // Control: the same flood with the guard's limit out of reach holds a whole 1 GiB message.
        let control = try await Self.federation(memoryLimitMiB: 1 << 20)
        let unguarded = try control.start("aggregator", ["run", "--config", "aggregator.yaml"])
        defer { unguarded.terminate() }
        #expect(await unguarded.waitForOutput("Listening for enrolled agents", seconds: 30), "\(unguarded.output)")
        let (controlBefore, controlPeak) = try await Self.chunkedFlood(control, aggregator: unguarded, seconds: 60,
                                                                       stopAbove: 950)
        print(String(format: "control, no effective limit: RSS %.0f MiB before, peak %.0f MiB", controlBefore, controlPeak))
        #expect(controlPeak - controlBefore > 900, "the flood did not reach the unguarded aggregator's memory: the test proves nothing")
        #expect(!unguarded.output.contains("Resident memory above memory_limit_mib"))
    }

    @Test("300 idle connections with an enrolled key and 300 keyless ones: the aggregator's memory grows by a bounded amount per connection, descriptors come back, rounds complete")
    func manyConnections() async throws {
        let federation = try await Self.federation(memoryLimitMiB: 4_096)
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml", "--rounds", "2"])
        defer { aggregator.terminate() }
        #expect(await aggregator.waitForOutput("Listening for enrolled agents", seconds: 30), "\(aggregator.output)")
        let pid = aggregator.process.processIdentifier
        try await Task.sleep(for: .seconds(1))
        let (rssBefore, fdsBefore) = (Self.residentMiB(pid), Self.openDescriptors(pid))

        let configuration = try EdgeAgentConfiguration.load(path: federation.path("mallory.yaml"))
        let identity = try KeyDirectory(path: federation.path("keys/mallory")).readIdentity()
        let server = try KeyDirectory.readPublicIdentity(file: federation.path("keys/aggregator/identity.public"))
        let context = try ZMQContext()
        final class Held {  // ZMQSocket is noncopyable: one reference-counted box per socket
            let socket: ZMQSocket
            init(_ socket: consuming ZMQSocket) { self.socket = socket }
        }
        var sockets: [Held] = []
        for _ in 0..<300 {
            let enrolled = try ZMQSocket(.dealer, in: context,
                                         options: AgentLink.options(configuration: configuration, identity: identity, aggregator: server))
            try enrolled.connect(configuration.aggregator)
            let keyless = try ZMQSocket(.dealer, in: context)
            try keyless.connect(configuration.aggregator)
            sockets += [Held(enrolled), Held(keyless)]
        }
        // Time for every handshake: the enrolled ones stay connected, the keyless ones are refused.
        var fds = fdsBefore
        for _ in 0..<100 where fds < fdsBefore + 300 {
            try await Task.sleep(for: .milliseconds(100))
            fds = Self.openDescriptors(pid)
        }
        try await Task.sleep(for: .seconds(2))
        let (rssDuring, fdsDuring) = (Self.residentMiB(pid), Self.openDescriptors(pid))
        print(String(format: "300 enrolled + 300 keyless connections: aggregator RSS %.1f → %.1f MiB (%.0f KiB per enrolled connection), descriptors %d → %d",
                     rssBefore, rssDuring, (rssDuring - rssBefore) * 1_024 / 300, fdsBefore, fdsDuring))
        #expect(fdsDuring - fdsBefore >= 290 && fdsDuring - fdsBefore <= 310,
                "one descriptor per enrolled connection, none kept for refused ones: \(fdsBefore) → \(fdsDuring)")
        #expect(rssDuring - rssBefore < 64, "\(rssDuring - rssBefore) MiB for 300 idle connections")

        // The honest agent still gets its rounds done beside them.
        let honest = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        defer { honest.terminate() }
        let status = await aggregator.waitForExit(seconds: 120)
        #expect(status == 0, "\(aggregator.output.suffix(3_000))")
        sockets.removeAll()  // closes them
        _ = context
    }

    @Test("An enrolled producer floods live ingest with 400 messages of 1,000 rows, half of them bad: every valid row stored once, the agent's memory bounded, warnings rate-limited")
    func ingestFlood() async throws {
        let federation = try await Federation(agents: [(id: "region-1", users: 10)], enrolled: ["region-1"], aggregatorSettings: "")
        let shop = NodeIdentity()
        try KeyDirectory(path: federation.path("keys/shop")).write(shop)
        let port = federation.port + 5
        try federation.appendLines("""
            ingest: tcp://127.0.0.1:\(port)
            ingest_format: jsonl
            clients:
              producers: [{id: shop, public_key_file: keys/shop/identity.public}]
            memory_limit_mib: 4096

            """, to: "region-1.yaml")
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml"])
        defer { aggregator.terminate() }
        let agent = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        defer { agent.terminate() }
        #expect(await agent.waitForOutput("Live ingest listening", seconds: 30), "\(agent.output)")
        let store = try EventStore(path: federation.path("data/region-1/events.sqlite"))
        let stored = try store.eventCount()
        let server = try KeyDirectory(path: federation.path("keys/region-1")).readPublicIdentity().box
        let context = try ZMQContext()
        let push = try await DoorClient.connect(.push, to: "tcp://127.0.0.1:\(port)", keys: shop, serverKey: server,
                                                context: context)
        defer { push.close() }
        let pid = agent.process.processIdentifier
        try await Task.sleep(for: .seconds(1))
        let before = Self.residentMiB(pid)
        let started = ContinuousClock.now
        async let sampled = Self.peakMiB(pid, seconds: 20)
        // 200 shoppers, each with a stream of events in time order; every other row is garbage.
        for message in 0..<400 {
            let rows = (0..<1_000).map { index -> String in
                let event = message * 1_000 + index
                guard index % 2 == 0 else { return "bad row \(event)" }
                let user = 900_000 + event % 200
                return #"{"user_id": \#(user), "item_id": \#(event % 977), "category_id": \#(1_000 + (event / 200) % 5 * 7_919), "behavior_type": "pv", "timestamp": \#(1_511_600_000 + event)}"#
            }
            try await push.send([Array(rows.joined(separator: "\n").utf8)])
        }
        var count = stored
        for _ in 0..<1_200 where count < stored + 200_000 {  // up to 2 minutes on a busy machine
            try await Task.sleep(for: .milliseconds(100))
            count = try store.eventCount()
        }
        let seconds = (ContinuousClock.now - started).inSeconds
        let peak = try await sampled
        print(String(format: "ingest flood: 200,000 valid + 200,000 bad rows stored in %.1f s; agent RSS %.0f MiB before, peak %.0f MiB",
                     seconds, before, peak))
        #expect(count == stored + 200_000, "every valid row stored once")
        #expect(peak - before < 128, "the agent's memory grew by \(peak - before) MiB")
        agent.terminate()
        #expect(await agent.waitForExit(seconds: 20) == 0, "\(agent.output.suffix(2_000))")
        #expect(agent.output.contains("events.refused=200000"), "every bad row counted: \(agent.output.suffix(2_000))")
        let lines = agent.output.components(separatedBy: "Refused live event").count - 1
        #expect(lines >= 1 && Double(lines) <= seconds + 25, "rate-limited: \(lines) warning lines in \(seconds) s")
    }
}
