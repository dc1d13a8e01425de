import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
package import Foundation
import Synchronization

/// A helper step (keygen, simulate, catalog, import) that did not succeed.
package struct SupportFailure: Error, CustomStringConvertible {
    package let description: String
}

/// Runs `process` to completion within `seconds`, or throws with its output.
func require(_ process: ChildProcess, seconds: Double, _ what: String) async throws {
    guard await process.waitForExit(seconds: seconds) == 0 else {
        throw SupportFailure(description: "\(what) failed: \(process.output)")
    }
}

/// Runs the real `aggregator` and `edge-agent` binaries of this build on 127.0.0.1.
package enum Binaries {
    /// The build directory: the test runner sits next to the products it was built with.
    package static let directory: URL = {
        if let override = ProcessInfo.processInfo.environment["FEDDRIFT_BIN_DIR"] {
            return URL(fileURLWithPath: override)
        }
        var url = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("aggregator").path) { return url }
        }
        return URL(fileURLWithPath: ".build/debug")
    }()

    package static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }
}

/// A child process whose stdout and stderr are collected; terminated when dropped.
package final class ChildProcess: @unchecked Sendable {
    // @unchecked: `output` is only mutated under `lock`; Process is used from the creating test only.
    package let process = Process()
    private let lock = NSLock()
    private var collected = Data()
    /// The reader saw end of file: everything the child wrote is in `collected`.
    private var reachedEnd = false

    package convenience init(_ binary: String, _ arguments: [String], in directory: URL,
                             environment: [String: String] = [:]) throws {
        try self.init(executable: Binaries.url(binary), arguments, in: directory, environment: environment)
    }

    /// Any program, e.g. `/usr/bin/env` with `python3 …`; `environment` adds to the test's own.
    package init(executable: URL, _ arguments: [String], in directory: URL, environment: [String: String] = [:]) throws {
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = directory
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        // A blocking read loop on its own thread, not `readabilityHandler`: on Linux, tearing down the
        // dispatch read source behind a readability handler races libdispatch's epoll bookkeeping and
        // has crashed the test runner in `_dispatch_event_loop_drain` (swift-corelibs-libdispatch
        // #949). A blocking read registers nothing with libdispatch; it ends at EOF, when the child exits.
        let reader = pipe.fileHandleForReading
        let thread = Thread { [weak self] in
            while true {
                let data = reader.availableData
                guard let self else { return }
                self.lock.lock()
                if data.isEmpty { self.reachedEnd = true } else { self.collected.append(data) }
                self.lock.unlock()
                if data.isEmpty { return }
            }
        }
        thread.name = "child-output"
        thread.start()
    }

    deinit { terminate() }

    package var output: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: collected, as: UTF8.self)
    }

    /// Waits up to `seconds` for the process to exit and its output to be read to the end (the reader
    /// thread may still be draining the pipe when the exit is seen); returns its status or nil if still running.
    package func waitForExit(seconds: Double) async -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while (process.isRunning || !outputComplete) && Date() < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        return process.isRunning ? nil : process.terminationStatus
    }

    private var outputComplete: Bool {
        lock.lock()
        defer { lock.unlock() }
        return reachedEnd
    }

    /// Waits up to `seconds` until the output contains `text`.
    package func waitForOutput(_ text: String, seconds: Double) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if output.contains(text) { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return output.contains(text)
    }

    package func terminate() {
        if process.isRunning { process.terminate() }
    }
}

/// A scratch directory with keys for an aggregator and agents, made by the real `keygen` commands.
package struct Federation {
    package let directory: URL
    package let port: Int

    /// `budgets` nil: both sides get `non_private: true` (exact updates, for tests that check arithmetic);
    /// otherwise each agent gets `privacy: {epsilon: budgets[id], delta: 1e-6}` (default 1000) and the test
    /// gives the aggregator its noise.
    package init(agents: [String], enrolled: [String], budgets: [String: Double]? = nil) async throws {
        let nonPrivate = budgets == nil
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-it-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // Below Linux's ephemeral range (32768–60999): the operator endpoints and every outgoing
        // connection of the tests running beside this one take ports from that range.
        port = TestPorts.block()
        for (binary, name) in [("aggregator", "aggregator")] + agents.map({ ("edge-agent", $0) }) {
            let keygen = try ChildProcess(binary, ["keygen", "--out", "keys/\(name)"], in: directory)
            try await require(keygen, seconds: 30, "keygen")
        }
        var yaml = "listen: tcp://127.0.0.1:\(port)\nannounce: tcp://127.0.0.1:\(port + 1)\n"
            + "key_directory: keys/aggregator\n" + (nonPrivate ? "non_private: true\n" : "") + "agents:\n"
        for agent in enrolled { yaml += "  - id: \(agent)\n    public_key_file: keys/\(agent)/identity.public\n" }
        try yaml.write(to: directory.appendingPathComponent("aggregator.yaml"), atomically: true, encoding: .utf8)
        for agent in agents {
            let config = """
                id: \(agent)
                aggregator: tcp://127.0.0.1:\(port)
                announcements: tcp://127.0.0.1:\(port + 1)
                aggregator_public_key_file: keys/aggregator/identity.public
                key_directory: keys/\(agent)
                \(budgets.map { "privacy: {epsilon: \($0[agent] ?? 1000), delta: 1.0e-6}" } ?? "non_private: true")

                """
            try config.write(to: directory.appendingPathComponent("\(agent).yaml"), atomically: true, encoding: .utf8)
        }
    }

    package func start(_ binary: String, _ arguments: [String], environment: [String: String] = [:]) throws -> ChildProcess {
        try ChildProcess(binary, arguments, in: directory, environment: environment)
    }
}

extension Federation {
    /// Simulates each agent's shoppers with the real `edge-agent simulate`, builds the shared catalog
    /// with `aggregator catalog build`, imports each region with `edge-agent import --config`, and adds
    /// `aggregatorSettings` (YAML lines) to the aggregator's configuration.
    package init(agents: [(id: String, users: Int)], enrolled: [String], aggregatorSettings: String,
                 budgets: [String: Double]? = nil) async throws {
        try await self.init(agents: agents.map(\.id), enrolled: enrolled, budgets: budgets)
        for (index, agent) in agents.enumerated() {
            let simulate = try start("edge-agent", ["simulate", "--users", "\(agent.users)", "--days", "3",
                                                    "--seed", "\(index + 1)", "--out", "\(agent.id).csv"])
            try await require(simulate, seconds: 60, "simulate")
        }
        let catalog = try start("aggregator", ["catalog", "build", "--out", "catalog.txt"] + agents.map { "\($0.id).csv" })
        try await require(catalog, seconds: 60, "catalog build")
        for agent in agents {
            try appendLines("data_directory: data/\(agent.id)\ncatalog: catalog.txt\n", to: "\(agent.id).yaml")
            let importer = try start("edge-agent", ["import", "--config", "\(agent.id).yaml", "\(agent.id).csv"])
            try await require(importer, seconds: 60, "import")
        }
        try appendLines("state_directory: state\n" + aggregatorSettings, to: "aggregator.yaml")
    }

    package func appendLines(_ text: String, to file: String) throws {
        let url = directory.appendingPathComponent(file)
        let existing = try String(contentsOf: url, encoding: .utf8)
        try (existing + (existing.hasSuffix("\n") ? "" : "\n") + text).write(to: url, atomically: true, encoding: .utf8)
    }

    package func path(_ relative: String) -> String { directory.appendingPathComponent(relative).path }
}

extension ChildProcess {
    /// Sends SIGKILL: no cleanup, no graceful shutdown — a crash.
    package func kill() {
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Waits up to `seconds` for the process to kill itself at an armed failpoint (`FEDDRIFT_FAILPOINTS`):
    /// true when it died of SIGKILL after printing the failpoint's line.
    package func waitForFailpoint(_ step: String, seconds: Double) async -> Bool {
        _ = await waitForExit(seconds: seconds)
        return !process.isRunning && process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL
            && output.contains("FAILPOINT \(step) ")
    }

    /// Lines of the output that start with `prefix` (the aggregator's per-round progress lines).
    package func lines(startingWith prefix: String) -> [String] {
        output.split(separator: "\n").map(String.init).filter { $0.hasPrefix(prefix) }
    }
}

/// Runs CPU-heavy test work (seconds to a minute in a debug build) on a thread of its own and awaits
/// it, so the async tests running beside it — relays, transport, real processes — keep the
/// cooperative pool (two threads on two cores). A synchronous test that computes for half a minute
/// holds a pool thread all that time; two of them stall every other test's continuations.
package func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.stackSize = 8 << 20
        thread.start()
    }
}

/// Ports for the servers tests start, below Linux's ephemeral range (32768–60999, where the nodes'
/// HTTP endpoints and every outgoing connection take theirs): blocks of 20 from a random start, never the
/// same block twice in one test process — tests run in parallel, and two random ports collided once in CI.
package enum TestPorts {
    private static let next = Mutex(Int.random(in: 0..<300) * 20 + 20_000)

    /// The first of 20 consecutive ports no other test of this process was given.
    package static func block() -> Int {
        next.withLock { port in
            defer { port = port + 20 >= 32_000 ? 20_000 : port + 20 }
            return port
        }
    }
}
