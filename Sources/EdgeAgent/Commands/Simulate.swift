import ArgumentParser
import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation

struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate synthetic shoppers (Taobao CSV) with injected interest shifts and their ground truth.",
        discussion: """
            Writes FILE (user_id,item_id,category_id,behavior_type,timestamp) and FILE.truth.jsonl, one \
            object per shifted shopper: user, time, event_index, fading_categories, emerging_categories. \
            Defaults are fitted to the real Taobao excerpts (docs/SIMULATOR.md).
            """
    )

    @Option(name: .long, help: "Number of shoppers.")
    var users = 1_000

    @Option(name: .long, help: "Days simulated.")
    var days = 9

    @Option(name: .long, help: "Seed; the same seed gives the same shoppers.")
    var seed: UInt64 = 1

    @Option(name: .long, help: "Share of shoppers whose interests shift once (0 to 1).")
    var shiftRate = 0.3

    @Option(name: .long, help: "Where to write the events.")
    var out: String

    func validate() throws {
        guard users > 0, days > 0 else { throw ValidationError("--users and --days must be positive") }
        guard (0...1).contains(shiftRate) else { throw ValidationError("--shift-rate must be between 0 and 1") }
    }

    func run() throws {
        var parameters = ShopperSimulator.Parameters()
        parameters.users = users
        parameters.days = days
        parameters.seed = seed
        parameters.shiftRate = shiftRate
        let output = ShopperSimulator(parameters: parameters).run()
        try output.taobaoCSV().write(toFile: out, atomically: true, encoding: .utf8)
        try output.groundTruthJSONLines().write(toFile: out + ".truth.jsonl", atomically: true, encoding: .utf8)
        print("Wrote \(out) and \(out).truth.jsonl")
        print(output.summary)
    }
}
