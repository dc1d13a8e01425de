import ArgumentParser
import FedIO
import FedLogic
import FedModel
import FedNode
import Foundation
import Logging

struct ExportModel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-model",
        abstract: "Write the global model as safetensors for PyTorch (nn.Embedding, nn.LSTM, nn.Linear).",
        discussion: """
            Reads the federation's current model (--config: the checkpoint in its state_directory) or a model \
            file (--model, FedDrift's .fdlm, docs/MODEL-FORMAT.md) and writes --out in the safetensors format: \
            float32 tensors named as PyTorch's state_dict names them (embedding.weight, action_embedding.weight, \
            gap_embedding.weight, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0, \
            linear.weight, linear.bias) and a metadata block (format, model version, shape, how inputs are \
            formed, and with --catalog the catalog's BLAKE2b digest). --examples N also writes OUT.examples.json: \
            N random event sequences with the next-category probabilities FedDrift computes for them, which \
            scripts/check-safetensors.py reproduces in PyTorch.

            Examples:
              aggregator export-model --config configs/aggregator.yaml --format safetensors --out model.safetensors
              aggregator export-model --model state/models/model-v12.fdlm --out model.safetensors --examples 5
            """
    )

    @Option(name: .long, help: "The aggregator's configuration: exports the model of its checkpoint.")
    var config: String?

    @Option(name: .long, help: "A FedDrift model file (.fdlm) to export instead.")
    var model: String?

    @Option(name: .long, help: "Output format: safetensors.")
    var format = "safetensors"

    @Option(name: .long, help: "Where to write the file.")
    var out: String

    @Option(name: .long, help: "The federation's category catalog: its digest and size go into the metadata.")
    var catalog: String?

    @Option(name: .long, help: "Also write OUT.examples.json with this many sequences and FedDrift's predictions.")
    var examples = 0

    func validate() throws {
        guard format == "safetensors" else { throw ValidationError("--format: safetensors is the one format offered") }
        guard (config == nil) != (model == nil) else { throw ValidationError("give --config or --model (one of them)") }
        guard (0...1000).contains(examples) else { throw ValidationError("--examples must be between 0 and 1000") }
    }

    func run() async throws {
        let parameters: LSTMParameters<Float>, version: UInt64
        if let model {
            (parameters, version) = try ModelFile.read(from: model)
        } else {
            let configuration = try AggregatorConfiguration.load(path: config ?? "")
            if let postgres = configuration.postgres {
                // A highly available pair: the committed checkpoint is in PostgreSQL (read without the lease).
                let store = try await PostgresStateStore.connect(postgres, logger: Logger(label: "export-model"))
                let checkpoint = try await store.load()
                await store.close()
                guard let checkpoint else {
                    throw ValidationError("no checkpoint in \(postgres.location): run the aggregator first, or give --model")
                }
                (parameters, version) = (checkpoint.parameters, checkpoint.modelVersion)
            } else {
                let path = (configuration.stateDirectory as NSString).appendingPathComponent("checkpoint.sqlite")
                guard FileManager.default.fileExists(atPath: path),
                      let checkpoint = try CheckpointStore(path: path).load() else {
                    throw ValidationError("no checkpoint at \(path): run the aggregator first, or give --model")
                }
                (parameters, version) = (checkpoint.parameters, checkpoint.modelVersion)
            }
        }
        var described: (digest: String, categories: Int)?
        if let catalog {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: catalog)))
            described = (Digest.hex(Digest.blake2b256(bytes)), try CategoryCatalog.read(from: catalog).categories)
        }
        let file = ModelExport.safetensors(parameters, modelVersion: version, catalog: described)
        try Data(file).write(to: URL(fileURLWithPath: out), options: .atomic)
        print("Wrote \(out): model v\(version), \(parameters.shape), \(parameters.values.count) parameters, \(file.count) bytes (safetensors, F32).")
        guard examples > 0 else { return }
        let scorer = StreamingScorer(parameters: parameters)
        var random = SplitMix64(seed: version &+ 17)
        var cases: [[String: Any]] = []
        for _ in 0..<examples {
            let length = 3 + Int(random.next() % 18)
            var categories: [Int] = [], actions: [Int] = [], gaps: [Int] = []
            var state = [Float](repeating: 0, count: scorer.stateSize)
            scorer.reset(&state)
            for step in 0..<length {
                let category = Int(random.next() % UInt64(parameters.shape.categories))
                let action = Int(random.next() % UInt64(LSTMShape.actionCount))
                let gap = step == 0 ? 0 : 1 + Int(random.next() % UInt64(LSTMShape.gapBuckets - 1))
                (categories, actions, gaps) = (categories + [category], actions + [action], gaps + [gap])
                _ = scorer.step(&state, category: category, action: action, gap: gap)
            }
            cases.append(["categories": categories, "actions": actions, "gaps": gaps,
                          "probabilities": Array(scorer.distribution).map(Double.init)])
        }
        let examplesPath = out + ".examples.json"
        let data = try JSONSerialization.data(withJSONObject: ["model_version": version, "cases": cases], options: [.sortedKeys])
        try data.write(to: URL(fileURLWithPath: examplesPath), options: .atomic)
        print("Wrote \(examplesPath): \(examples) sequences with FedDrift's next-category probabilities.")
    }
}
