@testable import FedNode
import Foundation
import TestSupport
import Testing

/// `edge-agent import` killed mid-file (SIGKILL: a crash) and run again stores every row of the file
/// exactly once; running it once more adds nothing.
@Suite("Import survives a crash without duplicates", .serialized, .timeLimit(.minutes(3)))
struct ImportKillTests {
    @Test("SIGKILL during import, then the same command again: the store holds the file's rows exactly once")
    func killedImportResumes() async throws {
        let federation = try await Federation(agents: ["region-1"], enrolled: ["region-1"])
        try federation.appendLines("data_directory: data/region-1\n", to: "region-1.yaml")
        let simulate = try federation.start("edge-agent", ["simulate", "--users", "3000", "--days", "9", "--out", "big.csv"])
        #expect(await simulate.waitForExit(seconds: 120) == 0, "\(simulate.output)")
        let rows = try String(contentsOfFile: federation.path("big.csv"), encoding: .utf8).split(separator: "\n").count

        let store = federation.path("data/region-1/events.sqlite")
        // Killed (SIGKILL, by its own failpoint) right after its second batch and its progress are committed.
        let first = try federation.start("edge-agent", ["import", "--config", "region-1.yaml", "big.csv"],
                                         environment: [Failpoint.environmentVariable: "agent.import.batch=2"])
        #expect(await first.waitForFailpoint("agent.import.batch", seconds: 60), "\(first.output)")
        let afterKill = (try? EventStore(path: store).eventCount()) ?? 0
        #expect(afterKill > 0 && afterKill < rows, "the import was cut short (\(afterKill) of \(rows))")

        let second = try federation.start("edge-agent", ["import", "--config", "region-1.yaml", "big.csv"])
        #expect(await second.waitForExit(seconds: 120) == 0, "\(second.output)")
        #expect(try EventStore(path: store).eventCount() == rows, "\(second.output)")
        #expect(second.output.contains("were imported before"), "\(second.output)")
        let third = try federation.start("edge-agent", ["import", "--config", "region-1.yaml", "big.csv"])
        #expect(await third.waitForExit(seconds: 120) == 0, "\(third.output)")
        #expect(try EventStore(path: store).eventCount() == rows)
        #expect(third.output.contains("Imported 0 events"), "\(third.output)")
    }
}
