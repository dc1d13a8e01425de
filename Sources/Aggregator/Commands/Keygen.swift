import ArgumentParser
import FedIO
import FedLogic
import FedNode
import FedTools

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the aggregator's key pair (CURVE server/box and signing keys).",
        discussion: "Writes DIR/identity.secret (mode 0600) and DIR/identity.public; every agent needs the latter."
    )

    @Option(name: .long, help: "Directory to write the key files into (created if missing).")
    var out: String

    @Flag(name: .long, help: "Replace existing keys. Agents holding the old identity.public can no longer connect.")
    var force = false

    func run() throws {
        let identity = NodeIdentity()
        let directory = KeyDirectory(path: out)
        try directory.write(identity, replacing: force)
        print(KeygenReport.text(role: "aggregator", directory: directory, identity: identity.publicIdentity))
        print("Next: give \(directory.publicFilePath) to every agent (aggregator_public_key_file).")
    }
}
