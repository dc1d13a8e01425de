import ArgumentParser
import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation

struct EvaluateDrift: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate-drift",
        abstract: "Compare FedDrift's detector with IQR, sliding-window, Page-Hinkley and ADWIN at equal alert budgets.",
        discussion: """
            Workload 1: the built-in simulator's injected interest shifts (the detector's model is trained by this \
            command on a disjoint half of the simulated shoppers). Workload 2 (with --data): real sequences in which \
            half the users' streams continue, at a random point, with another user's stream; the model is trained \
            on the other users of the file. Each method's threshold keeps its alarms on the unswitched streams \
            within the alert budget; detection = first alarm within 30 events after the switch. Also reported: \
            HR@10 over the next 20 events of the emerging-first (proactive) ranking vs the model's ordinary one.
            """
    )

    @Option(name: .long, help: "Real events: a Taobao CSV/JSONL file or a MovieLens 100K directory.")
    var data: String?

    @Option(name: .long, help: "taobao, jsonl or ml100k.")
    var format = "taobao"

    @Option(name: .long, help: "Simulated shoppers (half train the model, half are evaluated).")
    var users = 4_000

    @Option(name: .long, help: "Training epochs of the detector's model.")
    var epochs = 2

    @Option(name: .long, help: "Simulator seed.")
    var seed: UInt64 = 3

    @Option(name: .long, help: "FedDrift detector: CUSUM allowance k (standard deviations).")
    var allowance = DriftDetector.Settings().allowance

    @Option(name: .long, help: "FedDrift detector: weight of the short/long profile divergence.")
    var divergenceWeight = DriftDetector.Settings().divergenceWeight

    @Option(name: .long, help: "FedDrift detector: per-event decay of the short-horizon profile.")
    var shortDecay = DriftDetector.Settings().shortDecay

    @Option(name: .long, help: """
        FedDrift switch detector settings as a JSON object of drift.detector keys, e.g.         '{"run_lengths": 30, "hazard": 0.01}'; keys not given keep their defaults.
        """)
    var detectorSettings: String?

    @Option(name: .long, help: "Switch points: seed of the splice (real workloads).")
    var spliceSeed: UInt64 = 5

    @Flag(name: .long, help: "One JSON object per (workload, budget, method).")
    var json = false

    func validate() throws {
        guard ["taobao", "jsonl", "ml100k"].contains(format) else { throw ValidationError("--format: taobao, jsonl or ml100k") }
        guard users >= 100 else { throw ValidationError("--users must be at least 100") }
    }

    func run() throws {
        let shape = LSTMShape.small
        let simulated = DriftEvaluation.simulatorWorkload(users: users, seed: seed, shape: shape)
        try report(workload: "simulator", streams: simulated.streams, training: simulated.training,
                   prior: DriftEvaluation.prior(from: simulated.rawTraining, categories: simulated.rawCategories),
                   shape: shape, outOfVocabulary: simulated.outOfVocabulary, budgets: [1, 10, 50])
        guard let data else { return }
        let loaded = format == "ml100k" ? try SimulationData.movieLens(directory: data, keep: 400)
            : try SimulationData.file(path: data, format: EventFormat(rawValue: format) ?? .taobao, shape: shape, keep: 400)
        // Users alternate between the model's training set and the evaluated streams.
        let training = loaded.users.enumerated().filter { $0.offset % 2 == 0 }.map { user in
            EventSequence(categories: Array(user.element.categories.suffix(50)),
                          actions: Array(user.element.actions.suffix(50)), gaps: Array(user.element.gaps.suffix(50)))
        }
        let evaluated = loaded.users.enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
        let rawTraining = loaded.rawUsers.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
        let rawEvaluated = loaded.rawUsers.enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
        try report(workload: format == "ml100k" ? "ml100k_switches" : "real_switches",
               streams: DriftEvaluation.spliced(evaluated, raw: rawEvaluated, seed: spliceSeed), training: training,
               prior: DriftEvaluation.prior(from: rawTraining, categories: loaded.rawCategories), shape: loaded.shape,
               outOfVocabulary: loaded.outOfVocabulary, budgets: [10, 50])
    }

    private var switchSettings: SwitchDetector.Settings {
        get throws {
            guard let detectorSettings else { return SwitchDetector.Settings() }
            do {
                return try JSONDecoder().decode(SwitchDetector.Settings.self, from: Data(detectorSettings.utf8))
            } catch {
                throw ValidationError("--detector-settings: \(error)")
            }
        }
    }

    private func report(workload: String, streams: [DriftEvaluation.Stream], training: [EventSequence],
                        prior: [Double], shape: LSTMShape,
                        outOfVocabulary: Int32, budgets: [Double]) throws {
        var settings = FederationSimulation.Settings()
        settings.centralEpochs = epochs
        settings.sequenceLength = 50
        let simulation = FederationSimulation(settings: settings, shape: shape, outOfVocabulary: outOfVocabulary)
        let model = simulation.trainCentralModel(training: training)
        let switches = streams.filter { $0.switchIndex != nil }.count
        let events = streams.reduce(0) { $0 + $1.categories.count }
        let line = "\(workload): \(streams.count) streams, \(switches) switched, \(events) events; "
            + "model trained on \(training.count) other users\n"
        FileHandle.standardError.write(Data(line.utf8))
        var detector = DriftDetector.Settings()
        detector.allowance = allowance
        detector.divergenceWeight = divergenceWeight
        detector.shortDecay = shortDecay
        let switchDetector = SwitchDetector(settings: try switchSettings, prior: prior)
        let rows = DriftEvaluation.evaluate(workload: workload, streams: streams, scorer: StreamingScorer(parameters: model),
                                            budgets: budgets, settings: detector, switches: switchDetector)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        for row in rows {
            if json {
                print(String(decoding: (try? encoder.encode(row)) ?? Data(), as: UTF8.self))
            } else {
                func show(_ value: Double?) -> String { value.map { String(format: "%.3f", $0) } ?? "-" }
                print(String(format: "%@  budget %4.0f/10k  %-13@ detected %5.1f%% of %d  false alarms %5.1f/10k  "
                             + "delay p50 %@ p90 %@  HR@10 proactive %@ ordinary %@", row.workload, row.budgetPer10k,
                             row.method, 100 * row.detectionRate, row.switches, row.falseAlarmsPer10k,
                             show(row.delayP50), show(row.delayP90), show(row.proactiveHR10), show(row.ordinaryHR10)))
            }
        }
    }
}
