import ArgumentParser
import FedLogic
import FedTools
import Foundation

struct EvaluateTrends: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate-trends",
        abstract: "Demand-trend warnings against injected category surges and collapses: caught, delay, false warnings.",
        discussion: """
            Simulates --regions regions of shoppers in which some categories surge (×--surge-factor) or collapse \
            (×--collapse-factor) from a known time, half of them in every region and half in one. Each period \
            (--period-hours) every region releases, per category, the shoppers active in it (each shopper in at most \
            --categories-per-shopper categories) and the active shoppers, each count with Gaussian noise of standard \
            deviation z for each --noise-multiplier z (0 = exact), as an agent's trends.noise_multiplier z releases \
            them (charged as a Gaussian mechanism of multiplier z/√(k+1)). The aggregator's detector runs on every \
            region and on their sum. A trend is caught when a warning of its category and direction, in its region \
            or the total, comes within 8 periods of its start; every other warning is false. Deterministic for a \
            --seed. Figures: docs/EVALUATION.md.

            Example:
              aggregator evaluate-trends --users 2000 --noise-multiplier 0 2 4 8 --json
            """
    )

    @Option(name: .long, help: "Regions.")
    var regions = 3
    @Option(name: .long, help: "Simulated shoppers per region.")
    var users = 2_000
    @Option(name: .long, help: "Days simulated.")
    var days = 9
    @Option(name: .long, help: "Hours per period (one release per region per period).")
    var periodHours = 6.0
    @Option(name: .long, help: "Injected surges and collapses (each).")
    var trends = 8
    @Option(name: .long, help: "Factor of a surge.")
    var surgeFactor = 3.0
    @Option(name: .long, help: "Factor of a collapse.")
    var collapseFactor = 0.25
    @Option(name: .long, help: "k: categories a shopper counts in per period at most.")
    var categoriesPerShopper = 3
    @Option(name: .long, help: "q: each period's shoppers are Poisson-sampled with this probability, as the agents' release does (1 = all).")
    var samplingRate = 1.0
    @Option(name: .long, parsing: .upToNextOption, help: "Noise multipliers z of the releases (0 = exact).")
    var noiseMultiplier: [Double] = [0, 2, 4, 8]
    @Option(name: .long, help: "Seed of the simulation, the trends and the noise.")
    var seed: UInt64 = 1
    @Flag(name: .long, help: "One JSON object per noise multiplier, on stdout.")
    var json = false
    @Flag(name: .long, help: "Print every false warning, with its category's injected trend if it has one.")
    var listFalse = false

    func validate() throws {
        guard regions >= 1, users >= 10, days >= 3, periodHours > 0, trends >= 0, surgeFactor > 1,
              collapseFactor >= 0, collapseFactor < 1, categoriesPerShopper >= 1, samplingRate > 0, samplingRate <= 1,
              noiseMultiplier.allSatisfy({ $0 >= 0 && $0.isFinite }) else {
            throw ValidationError("""
                need regions ≥ 1, users ≥ 10, days ≥ 3, period-hours > 0, surge-factor > 1, 0 ≤ collapse-factor < 1, \
                categories-per-shopper ≥ 1, 0 < sampling-rate ≤ 1 and finite noise multipliers ≥ 0
                """)
        }
    }

    func run() throws {
        var settings = TrendEvaluation.Settings()
        (settings.regions, settings.usersPerRegion, settings.days, settings.periodHours) = (regions, users, days, periodHours)
        (settings.surges, settings.collapses, settings.surgeFactor, settings.collapseFactor) = (trends, trends, surgeFactor, collapseFactor)
        (settings.perShopperCategories, settings.noiseMultipliers, settings.seed) = (categoriesPerShopper, noiseMultiplier, seed)
        settings.listFalseWarnings = listFalse
        settings.samplingRate = samplingRate
        let outcomes = TrendEvaluation.run(settings) { line in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            for outcome in outcomes { print(String(decoding: try encoder.encode(outcome), as: UTF8.self)) }
            return
        }
        print("\(2 * trends) injected trends (\(trends) surges ×\(surgeFactor), \(trends) collapses ×\(collapseFactor)), "
              + "\(regions) regions × \(users) shoppers, \(days) days, \(periodHours) h periods, k = \(categoriesPerShopper)")
        print("   z   caught  surges  collapses  median delay   warnings  false  false/day  precision")
        for outcome in outcomes {
            print(String(format: "%4.1f  %3d/%-3d  %6d  %9d  %10@   %8d  %5d  %9.2f  %9.2f", outcome.noiseMultiplier,
                         outcome.caught, outcome.trends, outcome.caughtSurges, outcome.caughtCollapses,
                         outcome.medianDelayHours.map { String(format: "%.0f h", $0) } ?? "—", outcome.warnings,
                         outcome.falseWarnings, outcome.falseWarningsPerDay, outcome.precision))
        }
    }
}
