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
            half the users' streams continue, at a random point, with another user's stream. Users are split in two \
            folds by a hash of their id: the model and the population prior come from fold 0 (where fit-drift fits \
            the detector), the figures from fold 1. Each method's threshold keeps its alarms on the unswitched \
            streams within the alert budget; detection = first alarm within 30 events after the switch. For FedDrift \
            also the calibration error: the threshold set on fold 0's streams, applied to fold 1 (false alarms and \
            detection realised there). Also reported: HR@10 over the next 20 events of the emerging-first \
            (proactive) ranking vs the model's ordinary one. Results go to stdout; progress and notes to stderr (a \
            bar on a terminal, a line every 10 s otherwise).

            Example (fit on fold 0, report on fold 1):
              edge-agent fit-drift --data ub_sample_users.csv --out fitted.json
              edge-agent evaluate-drift --data ub_sample_users.csv --detector-settings @fitted.json --json
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
        FedDrift switch detector settings as a JSON object of alerts.detector keys, e.g. \
        '{"run_lengths": 30, "hazard": 0.01}', or @FILE (fit-drift's output); keys not given keep their defaults.
        """)
    var detectorSettings: String?

    @Flag(name: .long, help: "Skip the simulator workload (with --data).")
    var noSimulator = false

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
        let progress = ProgressReporter()
        if !noSimulator {
            let simulated = DriftEvaluation.simulatorWorkload(users: users, seed: seed, shape: shape,
                                                              progress: progress)
            try report(workload: "simulator", streams: simulated.streams, training: simulated.training,
                       prior: DriftEvaluation.prior(from: simulated.rawTraining, categories: simulated.rawCategories),
                       shape: shape, outOfVocabulary: simulated.outOfVocabulary, budgets: [1, 10, 50],
                       progress: progress)
        }
        guard let data else { return }
        let loaded = format == "ml100k" ? try SimulationData.movieLens(directory: data, keep: 400)
            : try SimulationData.file(path: data, format: EventFormat(rawValue: format) ?? .taobao, shape: shape,
                                      keep: 400, progress: progress)
        // Fold 0 (by a hash of the user id) trains the model, gives the prior and calibrates; fold 1 is reported.
        let fit = loaded.fold(0), held = loaded.fold(1)
        let training = fit.users.map { user in
            EventSequence(categories: Array(user.categories.suffix(50)), actions: Array(user.actions.suffix(50)),
                          gaps: Array(user.gaps.suffix(50)))
        }
        try report(workload: format == "ml100k" ? "ml100k_switches" : "real_switches",
                   streams: DriftEvaluation.spliced(held.users, raw: held.raw, seed: spliceSeed), training: training,
                   prior: DriftEvaluation.prior(from: fit.raw, categories: loaded.rawCategories), shape: loaded.shape,
                   outOfVocabulary: loaded.outOfVocabulary, budgets: [10, 50],
                   calibration: DriftEvaluation.spliced(fit.users, raw: fit.raw, seed: spliceSeed), progress: progress)
    }

    private var switchSettings: SwitchDetector.Settings {
        get throws {
            guard let detectorSettings else { return SwitchDetector.Settings() }
            return try FitDrift.loadSettings(detectorSettings, option: "--detector-settings")
        }
    }

    private func report(workload: String, streams: [DriftEvaluation.Stream], training: [EventSequence],
                        prior: [Double], shape: LSTMShape, outOfVocabulary: Int32, budgets: [Double],
                        calibration: [DriftEvaluation.Stream]? = nil, progress: ProgressReporter) throws {
        var settings = FederationSimulation.Settings()
        settings.centralEpochs = epochs
        settings.sequenceLength = 50
        let simulation = FederationSimulation(settings: settings, shape: shape, outOfVocabulary: outOfVocabulary)
        let model = simulation.trainCentralModel(training: training, progress: progress)
        let switches = streams.filter { $0.switchIndex != nil }.count
        let events = streams.reduce(0) { $0 + $1.categories.count }
        progress.note("\(workload): \(streams.count) streams, \(switches) switched, \(events) events; "
                      + "model trained on \(training.count) other users")
        var detector = DriftDetector.Settings()
        detector.allowance = allowance
        detector.divergenceWeight = divergenceWeight
        detector.shortDecay = shortDecay
        let switchDetector = SwitchDetector(settings: try switchSettings, prior: prior)
        var rows = DriftEvaluation.evaluate(workload: workload, streams: streams, scorer: StreamingScorer(parameters: model),
                                            budgets: budgets, settings: detector, switches: switchDetector,
                                            progress: progress)
        if let calibration {
            // The threshold that meets the budget on fold 0, applied as is to fold 1.
            for index in rows.indices where rows[index].method == "feddrift" {
                let budget = rows[index].budgetPer10k
                let threshold = DriftFitting.measure(try switchSettings, streams: calibration, prior: prior,
                                                     budget: budget).threshold
                let realised = DriftFitting.measure(try switchSettings, streams: streams, prior: prior, budget: budget,
                                                    threshold: threshold)
                rows[index].calibratedFalseAlarmsPer10k = realised.falseAlarmsPer10k
                rows[index].calibratedDetectionRate = realised.rate
            }
        }
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
                             show(row.delayP50), show(row.delayP90), show(row.proactiveHR10), show(row.ordinaryHR10))
                      + (row.calibratedFalseAlarmsPer10k.map {
                          String(format: "  threshold from fold 0: %.1f false alarms/10k, %.1f%% detected", $0,
                                 100 * (row.calibratedDetectionRate ?? 0))
                      } ?? ""))
            }
        }
    }
}
