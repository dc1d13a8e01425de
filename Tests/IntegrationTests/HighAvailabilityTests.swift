@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
import Foundation
import Logging
import TestSupport
import Testing

extension ScaleOutTests {
    /// Two real `aggregator` processes sharing a real PostgreSQL on loopback, two real `edge-agent` processes that
    /// know both endpoints. The leader is killed with SIGKILL mid-round (after accepting an update; inside the
    /// checkpoint's transaction): the standby takes over within 10 s at the round after the last commit, from the
    /// committed model; no round is lost or committed twice; the agents go on without a restart, and no ledger
    /// charges a round twice.
    @Suite("A highly available aggregator on PostgreSQL: SIGKILL the leader mid-round", .serialized, .timeLimit(.minutes(10)))
    struct HighAvailabilityTests {
        static let agents = FaultInjectionTests.agents

        /// The federation of ``FaultInjectionTests`` (private agents, plain aggregation), with aggregator `a` on
        /// ports P, P+1 and `b` on P+2, P+3, both on `server`; the agents list both.
        static func federation(_ server: PostgresServer) async throws -> Federation {
            let federation = try await FaultInjectionTests.federation()
            let port = federation.port
            let original = try String(contentsOf: URL(fileURLWithPath: federation.path("aggregator.yaml")), encoding: .utf8)
            let standby = original
                .replacingOccurrences(of: "tcp://127.0.0.1:\(port)\n", with: "tcp://127.0.0.1:\(port + 2)\n")
                .replacingOccurrences(of: "tcp://127.0.0.1:\(port + 1)\n", with: "tcp://127.0.0.1:\(port + 3)\n")
                .replacingOccurrences(of: "state_directory: state\n", with: "state_directory: state-b\n")
            try standby.write(to: URL(fileURLWithPath: federation.path("aggregator-b.yaml")), atomically: true, encoding: .utf8)
            try federation.appendLines(server.configuration(node: "a"), to: "aggregator.yaml")
            try federation.appendLines(server.configuration(node: "b"), to: "aggregator-b.yaml")
            for agent in agents {
                let url = URL(fileURLWithPath: federation.path("\(agent.id).yaml"))
                let config = try String(contentsOf: url, encoding: .utf8)
                    .replacingOccurrences(of: "aggregator: tcp://127.0.0.1:\(port)\n",
                                          with: "aggregator: [tcp://127.0.0.1:\(port), tcp://127.0.0.1:\(port + 2)]\n")
                    .replacingOccurrences(of: "announcements: tcp://127.0.0.1:\(port + 1)\n",
                                          with: "announcements: [tcp://127.0.0.1:\(port + 1), tcp://127.0.0.1:\(port + 3)]\n")
                try config.write(to: url, atomically: true, encoding: .utf8)
            }
            return federation
        }

        static func state(_ server: PostgresServer) async throws -> PostgresStateStore {
            var configuration = PostgresConfiguration(host: "127.0.0.1", port: server.port, user: server.user)
            configuration.passwordFile = server.passwordFile.path
            configuration.node = "test-reader"
            return try await PostgresStateStore.connect(configuration, logger: Logger(label: "test"))
        }

        /// The first line of `process`'s output that contains `text`, waiting up to `seconds` for it.
        static func line(_ process: ChildProcess, _ text: String, seconds: Double) async -> String? {
            guard await Self.time(process, text, seconds: seconds) != nil else { return nil }
            return process.output.split(separator: "\n").first { $0.contains(text) }.map(String.init)
        }

        /// The wall-clock time at the start of a log line (`2026-12-07T00:32:38.791Z …`).
        static func logTime(_ line: String) -> Date? {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            return line.split(separator: " ").first.flatMap { formatter.date(from: String($0)) }
        }

        /// When a process killed itself at a failpoint (`FAILPOINT step hit N at <Unix ms>: SIGKILL`).
        static func failpointTime(_ output: String) -> Date? {
            guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("FAILPOINT ") }),
                  let at = line.range(of: " at "), let ms = Int64(line[at.upperBound...].prefix { $0.isNumber }) else { return nil }
            return Date(timeIntervalSince1970: Double(ms) / 1000)
        }

        /// The value of `key=` in a log line.
        static func field(_ key: String, _ line: String) -> String? {
            line.range(of: " \(key)=").map { String(line[$0.upperBound...].prefix { $0 != " " }) }
        }

        /// Waits until `process`'s output contains `text`; returns when it did (nil after `seconds`).
        static func time(_ process: ChildProcess, _ text: String, seconds: Double) async -> ContinuousClock.Instant? {
            let deadline = ContinuousClock.now + .seconds(seconds)
            while ContinuousClock.now < deadline {
                if process.output.contains(text) { return .now }
                try? await Task.sleep(for: .milliseconds(20))
            }
            return nil
        }

        @Test("The leader SIGKILLed mid-round (after accepting an update; inside the checkpoint's transaction): the standby leads within 10 s at the same round with the committed model; no round lost or committed twice; agents continue without restart; no ledger charges a round twice",
              arguments: ["aggregator.update.accepted=3", "aggregator.checkpoint.write=3"])
        func failover(failpoint: String) async throws {
            let step = String(failpoint.prefix { $0 != "=" })
            let server = try await PostgresServer.start(port: TestPorts.block())
            defer { server.stop() }
            let federation = try await Self.federation(server)
            let leader = try federation.start("aggregator", ["run", "--config", "aggregator.yaml"],
                                              environment: [Failpoint.environmentVariable: failpoint])
            defer { leader.terminate() }
            #expect(await Self.time(leader, "Leading: this aggregator holds the lease", seconds: 60) != nil, "\(leader.output)")
            let standby = try federation.start("aggregator", ["run", "--config", "aggregator-b.yaml", "--rounds", "2"])
            defer { standby.terminate() }
            #expect(await Self.time(standby, "Standby: another aggregator leads", seconds: 60) != nil, "\(standby.output)")
            let agents = try Self.agents.map { try federation.start("edge-agent", ["run", "--config", "\($0.id).yaml"]) }
            defer { agents.forEach { $0.terminate() } }

            #expect(await leader.waitForFailpoint(step, seconds: 120), "\(leader.output)")
            // When it died (its failpoint line's wall clock), when the standby led and re-opened the round (its log's).
            let killedAt = try #require(Self.failpointTime(leader.output), "\(leader.output)")
            let leadingLine = try #require(await Self.line(standby, "Leading: this aggregator holds the lease", seconds: 30),
                                           "\(standby.output)")
            let openLine = await Self.line(standby, "Round open", seconds: 30)
            let leadingAt = try #require(Self.logTime(leadingLine)), openAt = openLine.flatMap(Self.logTime)
            let takeover = leadingAt.timeIntervalSince(killedAt), firstRound = openAt.map { $0.timeIntervalSince(killedAt) }
            print("failover (\(step)): leader killed → standby leading in \(takeover) seconds, its first round open after "
                  + "\(firstRound.map { "\($0) seconds" } ?? "never")")
            #expect(takeover > 0, "the standby waited while the leader lived: \(standby.output)")
            #expect(takeover < 10 && (firstRound ?? 99) < 10, "\(standby.output)")
            // It resumed from what the leader had committed: the round log's last round and model, all the leader's.
            let committedRound = try #require(Self.field("round.completed", leadingLine).flatMap(UInt64.init))
            let committedVersion = try #require(Self.field("model.version", leadingLine).flatMap(UInt64.init))
            let reader = try await Self.state(server)
            let logBefore = try await reader.roundLog().filter { $0.round <= committedRound }
            #expect(committedRound >= 1 && logBefore.map(\.round) == Array(1...committedRound)
                    && logBefore.allSatisfy { $0.holder == "a" } && logBefore.last?.modelVersion == committedVersion,
                    "\(logBefore.map { ($0.round, $0.holder) }) \(leadingLine)")

            #expect(await standby.waitForExit(seconds: 180) == 0, "\(standby.output)")
            let lines = standby.lines(startingWith: "round ")
            // Not lost: the standby continues at the round after the last commit, every agent in every round.
            #expect(lines.count == 2 && lines[0].hasPrefix("round \(committedRound + 1) │"), "\(lines) \(standby.output)")
            #expect(lines.allSatisfy { $0.contains("aggregated → model v") && FaultInjectionTests.accepted($0) == 2 },
                    "both agents take part without a restart: \(lines) \(agents.map(\.output))")
            let final = try #require(try await reader.load())
            #expect(final.round == committedRound + 2 && final.modelVersion == committedVersion + 2)
            // Not committed twice: the round log holds each round once, the new ones under b's newer token.
            let log = try await reader.roundLog()
            #expect(log.map(\.round) == Array(1...final.round), "\(log.map(\.round))")
            #expect(log.suffix(2).allSatisfy { $0.holder == "b" && $0.token > (logBefore.last?.token ?? 0) })
            for agent in Self.agents {
                // Counted once: the leader's accepted updates of committed rounds, and the standby's.
                let before = FaultInjectionTests.acceptedRounds(leader.output, agent: agent.id).filter { $0 <= committedRound }
                let accepted = FaultInjectionTests.acceptedRounds(standby.output, agent: agent.id)
                #expect(final.agents[agent.id]?.acceptedUpdates == before.count + accepted.count
                        && Set(accepted).count == accepted.count, "\(agent.id): \(before), \(accepted)")
            }
            // Receipts verify against the ledger heads the leader committed. (A late copy of a re-sent receipt that
            // arrives after its round closed is refused as "not open": the update it covered was already counted.)
            let refusedReceipts = standby.output.split(separator: "\n")
                .filter { $0.contains("Ledger receipt refused") && !$0.contains("is not open") }
            #expect(refusedReceipts.isEmpty, "\(refusedReceipts)")
            await reader.close()

            // The agents were never restarted: the same processes, still running; no round charged twice.
            #expect(agents.allSatisfy { $0.process.isRunning }, "\(agents.map(\.output))")
            for agent in agents { agent.terminate() }
            for agent in agents { _ = await agent.waitForExit(seconds: 30) }
            for agent in Self.agents {
                let rounds = try FaultInjectionTests.updateCharges(federation, agent.id)
                #expect(Set(rounds).count == rounds.count, "\(agent.id) charged a round twice: \(rounds)")
            }
        }

        @Test("A leader paused (SIGSTOP) mid-round loses its lease to the standby; resumed, it writes nothing and stops, and the agents follow the new leader")
        func pausedLeader() async throws {
            let server = try await PostgresServer.start(port: TestPorts.block())
            defer { server.stop() }
            let federation = try await Self.federation(server)
            let leader = try federation.start("aggregator", ["run", "--config", "aggregator.yaml"])
            defer { leader.terminate() }
            #expect(await Self.time(leader, "Leading: this aggregator holds the lease", seconds: 60) != nil, "\(leader.output)")
            let standby = try federation.start("aggregator", ["run", "--config", "aggregator-b.yaml", "--rounds", "2"])
            defer { standby.terminate() }
            let agents = try Self.agents.map { try federation.start("edge-agent", ["run", "--config", "\($0.id).yaml"]) }
            defer { agents.forEach { $0.terminate() } }
            // Pause the leader once its second round is open (its first is committed).
            #expect(await Self.time(leader, "round 1 │", seconds: 120) != nil, "\(leader.output)")
            #expect(await Self.time(leader, "round.id=2 ", seconds: 60) != nil, "\(leader.output)")
            kill(leader.process.processIdentifier, SIGSTOP)
            // Its session lives, so the standby waits for the lease (3 s) to run out, then takes over from what the
            // leader had committed (its log line says which round and token).
            let leadingLine = try #require(await Self.line(standby, "Leading: this aggregator holds the lease", seconds: 30),
                                           "\(standby.output)")
            let committedRound = try #require(Self.field("round.completed", leadingLine).flatMap(UInt64.init))
            let tokenBefore = try #require(Self.field("lease.token", leadingLine).flatMap(Int64.init)) - 1
            #expect(await Self.time(standby, "round \(committedRound + 1) │", seconds: 90) != nil, "\(standby.output)")
            kill(leader.process.processIdentifier, SIGCONT)
            // Resumed, the old leader finds another token at its next renewal (or checkpoint) and stops.
            #expect(await leader.waitForExit(seconds: 30) == 1, "\(leader.output)")
            #expect(leader.output.contains("leadership lost: b holds the lease now"), "\(leader.output)")
            #expect(await standby.waitForExit(seconds: 180) == 0, "\(standby.output)")
            let lines = standby.lines(startingWith: "round ")
            #expect(lines.count == 2 && lines[0].hasPrefix("round \(committedRound + 1) │"), "\(lines)")
            #expect(lines.allSatisfy { FaultInjectionTests.accepted($0) == 2 }, "the agents follow the new leader: \(lines)")
            let reader = try await Self.state(server)
            let log = try await reader.roundLog()
            #expect(committedRound >= 1 && log.map(\.round) == Array(1...(committedRound + 2)), "\(log.map(\.round))")
            #expect(log.filter { $0.holder == "a" }.map(\.round) == Array(1...committedRound),
                    "nothing the old leader did after its pause was committed: \(log.map { ($0.round, $0.holder) })")
            #expect(log.suffix(2).allSatisfy { $0.token > tokenBefore })
            await reader.close()
        }

        @Test("A graceful stop hands the lease over at once, and an aggregator that loses its lease stops")
        func handover() async throws {
            let server = try await PostgresServer.start(port: TestPorts.block())
            defer { server.stop() }
            let federation = try await Self.federation(server)
            let first = try federation.start("aggregator", ["run", "--config", "aggregator.yaml"])
            defer { first.terminate() }
            #expect(await Self.time(first, "Leading: this aggregator holds the lease", seconds: 60) != nil, "\(first.output)")
            let second = try federation.start("aggregator", ["run", "--config", "aggregator-b.yaml"])
            defer { second.terminate() }
            #expect(await Self.time(second, "Standby: another aggregator leads", seconds: 60) != nil, "\(second.output)")
            first.terminate()  // SIGTERM
            #expect(await first.waitForExit(seconds: 30) == 0, "\(first.output)")
            let stopped = ContinuousClock.now
            #expect(first.output.contains("Lease released"), "\(first.output)")
            let leading = try #require(await Self.time(second, "Leading: this aggregator holds the lease", seconds: 30))
            #expect(leading - stopped < .seconds(2), "a released lease is taken within a poll, not after lease_seconds")

            // Someone else takes the lease (an operator's mistake, a partition healed): the leader notices at its
            // next renewal and stops with an error instead of serving rounds it can no longer commit.
            try await server.psql("UPDATE feddrift_leader SET holder = 'intruder', token = token + 1")
            #expect(await second.waitForExit(seconds: 30) == 1, "\(second.output)")
            #expect(second.output.contains("leadership lost: intruder holds the lease now"), "\(second.output)")
        }
    }
}
