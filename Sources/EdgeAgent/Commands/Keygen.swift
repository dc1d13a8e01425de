import ArgumentParser
import FedIO
import FedLogic
import FedNode
import FedTools

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create this agent's key pair (CURVE/box and signing keys).",
        discussion: """
            Writes DIR/identity.secret (mode 0600) and DIR/identity.public. Enroll the agent by adding \
            its id and DIR/identity.public to the aggregator's configuration (agents: - id, public_key_file).
            """
    )

    @Option(name: .long, help: "Directory to write the key files into (created if missing).")
    var out: String

    @Flag(name: .long, help: "Replace existing keys. The old keys stop working.")
    var force = false

    func run() throws {
        let identity = NodeIdentity()
        let directory = KeyDirectory(path: out)
        try directory.write(identity, replacing: force)
        print(KeygenReport.text(role: "edge agent", directory: directory, identity: identity.publicIdentity))
        print("Next: give \(directory.publicFilePath) to the aggregator operator to enroll this agent.")
    }
}
