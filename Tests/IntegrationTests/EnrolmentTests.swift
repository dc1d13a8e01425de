import Foundation
import TestSupport
import Testing

/// Real `aggregator` and `edge-agent` processes on 127.0.0.1.
@Suite("Enrolment between real processes", .serialized, .timeLimit(.minutes(2)))
struct EnrolmentTests {
    @Test("Enrolled agents register over CURVE with sealed messages; an unenrolled agent is refused; SIGTERM stops the aggregator")
    func enrolledAndRefused() async throws {
        let federation = try await Federation(agents: ["region-1", "region-2", "intruder"],
                                              enrolled: ["region-1", "region-2"])
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml"])
        #expect(await aggregator.waitForOutput("Listening for enrolled agents", seconds: 20), "\(aggregator.output)")

        for agent in ["region-1", "region-2"] {
            let process = try federation.start("edge-agent", ["run", "--config", "\(agent).yaml", "--once"])
            let status = await process.waitForExit(seconds: 30)
            #expect(status == 0, "\(agent): \(process.output)")
            #expect(process.output.contains("Registered: sealed hello accepted, sealed welcome opened"))
        }
        let intruder = try federation.start("edge-agent", ["run", "--config", "intruder.yaml", "--once"])
        #expect(await intruder.waitForExit(seconds: 30) == 1)
        #expect(intruder.output.contains("its key is not enrolled"), "\(intruder.output)")

        #expect(await aggregator.waitForOutput("Refused connection: key not enrolled", seconds: 10))
        let opened = aggregator.output.components(separatedBy: "Agent registered: sealed hello opened, signature verified").count - 1
        #expect(opened == 2)
        aggregator.terminate()
        #expect(await aggregator.waitForExit(seconds: 10) == 0, "graceful shutdown: \(aggregator.output)")
    }

    @Test("A secret key file readable by others stops the aggregator with the chmod fix")
    func insecureKeyRefused() async throws {
        let federation = try await Federation(agents: ["region-1"], enrolled: ["region-1"])
        let secret = federation.directory.appendingPathComponent("keys/aggregator/identity.secret").path
        chmod(secret, 0o644)
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml"])
        #expect(await aggregator.waitForExit(seconds: 20) != 0)
        #expect(aggregator.output.contains("chmod 600"), "\(aggregator.output)")
    }

    @Test("A second aggregator on the same port fails with a clear address-in-use error")
    func addressInUse() async throws {
        let federation = try await Federation(agents: ["region-1"], enrolled: ["region-1"])
        let first = try federation.start("aggregator", ["run", "--config", "aggregator.yaml"])
        #expect(await first.waitForOutput("Listening for enrolled agents", seconds: 20), "\(first.output)")
        let second = try federation.start("aggregator", ["run", "--config", "aggregator.yaml"])
        #expect(await second.waitForExit(seconds: 20) != 0)
        #expect(second.output.contains("Address already in use"), "\(second.output)")
        #expect(second.output.contains("choose another port"))
    }
}
