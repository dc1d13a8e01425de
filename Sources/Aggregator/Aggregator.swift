public import ArgumentParser
import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Logging

@main
struct AggregatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aggregator",
        abstract: "FedDrift aggregator: enrolls edge agents by public key and runs the federation.",
        discussion: """
            Agents connect over CURVE; only keys on the configured allow-list complete the handshake, and \
            every update arrives sealed to this aggregator and signed by its agent.

            First time:
              aggregator keygen --out keys/aggregator     # give keys/aggregator/identity.public to every agent
              aggregator run --config configs/aggregator.yaml
            """,
        version: FedDrift.version,
        subcommands: [Run.self, Status.self, Dashboard.self, CheckConfig.self, Keygen.self, Catalog.self, PrivacyPlan.self, ExportModel.self, Simulate.self, EvaluateTrends.self, Bench.self]
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
