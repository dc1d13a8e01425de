import Foundation
import TestSupport
import Testing

/// Files that hold shopper data are their owner's alone: the binaries create files 0600 and folders
/// 0700 (umask 077 in `main`), whatever the shell's umask; public key files stay readable (0644).
@Suite("Files of shopper data are created 0600 in 0700 folders", .serialized, .timeLimit(.minutes(2)))
struct FileModeTests {
    static func mode(_ path: String) throws -> Int {
        try ((FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue)
            ?? { throw CocoaError(.fileReadUnknown) }()
    }

    @Test("simulate, import and catalog build (real processes) create 0600 files in 0700 folders; identity.public stays 0644")
    func modes() async throws {
        // The children inherit this umask: the usual permissive one, so that only the binaries can restrict.
        _ = umask(0o022)
        let federation = try await Federation(agents: [(id: "region-1", users: 10)], enrolled: ["region-1"],
                                              aggregatorSettings: "")
        #expect(try Self.mode(federation.path("data/region-1")) == 0o700)
        #expect(try Self.mode(federation.path("data/region-1/events.sqlite")) == 0o600)
        #expect(try Self.mode(federation.path("region-1.csv")) == 0o600, "simulated shoppers")
        #expect(try Self.mode(federation.path("region-1.csv.truth.jsonl")) == 0o600)
        #expect(try Self.mode(federation.path("keys/region-1/identity.secret")) == 0o600)
        #expect(try Self.mode(federation.path("keys/region-1/identity.public")) == 0o644, "public keys are meant to be shared")
        // Control: a file made under the umask the binaries inherited is 0644.
        let probe = federation.path("probe.txt")
        #expect(FileManager.default.createFile(atPath: probe, contents: Data("x".utf8)))
        #expect(try Self.mode(probe) == 0o644, "the binaries, not the environment, restrict modes")
    }
}
