public import ArgumentParser
import FedIO
import FedLogic
import FedNode
import FedTools
import Logging

@main
struct EdgeAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edge-agent",
        abstract: "FedDrift edge agent: keeps a region's shopper behaviour on this node and joins the federation.",
        discussion: """
            Raw events never leave this node. The agent talks to its aggregator over a CURVE-encrypted \
            ZeroMQ link that only enrolled keys may use, and seals and signs everything it sends.

            First time on a node:
              edge-agent keygen --out keys/region-1      # then give keys/region-1/identity.public to the aggregator operator
              edge-agent run --config configs/agent-1.yaml
            """,
        version: FedDrift.version,
        subcommands: [Run.self, Status.self, Dashboard.self, CheckConfig.self, Keygen.self, Import.self, Simulate.self, Privacy.self, Alerts.self, ScoreAlerts.self, Recommend.self, Replay.self, EvaluateDrift.self, FitDrift.self, EvaluateChurn.self, Bench.self]
    )

    /// Every file this process creates is the owner's alone (0600, folders 0700), a fixed mmap threshold, then
    /// the usual parsing.
    static func main() async {
        OwnerOnlyFiles.enable()
        ProcessMemory.fixAllocatorThresholds()  // flat resident memory over thousands of rounds (see there)
        await main(nil)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension LogFormat: ExpressibleByArgument {}
