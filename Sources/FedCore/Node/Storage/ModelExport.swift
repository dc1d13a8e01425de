package import FedIO
package import FedModel

/// The global model as PyTorch modules load it: `nn.Embedding` (categories, actions, gap buckets),
/// one-layer `nn.LSTM` (batch_first; input = the three embeddings concatenated in that order; gates
/// i, f, g, o as PyTorch orders them), `nn.Linear` to the categories. Tensor names are the modules'
/// `state_dict` keys; the metadata says which model it is.
package enum ModelExport {
    /// Tensor names in PyTorch's `state_dict` spelling, for each ``ParameterLayout`` tensor.
    static let names = [
        "embedding.weight": "embedding.weight", "action_embedding.weight": "action_embedding.weight",
        "gap_embedding.weight": "gap_embedding.weight", "lstm.weight_ih": "lstm.weight_ih_l0",
        "lstm.weight_hh": "lstm.weight_hh_l0", "lstm.bias_ih": "lstm.bias_ih_l0", "lstm.bias_hh": "lstm.bias_hh_l0",
        "linear.weight": "linear.weight", "linear.bias": "linear.bias",
    ]

    /// The tensors with their shapes.
    package static func tensors(of parameters: LSTMParameters<Float>) -> [Safetensors.Tensor] {
        let shape = parameters.shape, gates = 4 * shape.hidden
        let shapes: [String: [Int]] = [
            "embedding.weight": [shape.categories, shape.embedding],
            "action_embedding.weight": [LSTMShape.actionCount, shape.actionEmbedding],
            "gap_embedding.weight": [LSTMShape.gapBuckets, shape.gapEmbedding],
            "lstm.weight_ih": [gates, shape.inputSize], "lstm.weight_hh": [gates, shape.hidden],
            "lstm.bias_ih": [gates], "lstm.bias_hh": [gates],
            "linear.weight": [shape.categories, shape.hidden], "linear.bias": [shape.categories],
        ]
        return parameters.layout.tensors.map { name, range in
            Safetensors.Tensor(name: names[name] ?? name, shape: shapes[name] ?? [range.count],
                               values: Array(parameters.values[range]))
        }
    }

    /// The safetensors file: tensors plus metadata (format, model version, shape, and the catalog's
    /// digest and size when given, so a loader can check it has the catalog the indices refer to).
    package static func safetensors(_ parameters: LSTMParameters<Float>, modelVersion: UInt64,
                                    catalog: (digest: String, categories: Int)? = nil) -> [UInt8] {
        let shape = parameters.shape
        var metadata = [
            "format": "feddrift-lstm", "format_version": "1", "model_version": "\(modelVersion)",
            "categories": "\(shape.categories)", "embedding": "\(shape.embedding)", "hidden": "\(shape.hidden)",
            "action_embedding": "\(shape.actionEmbedding)", "gap_embedding": "\(shape.gapEmbedding)",
            "gap_buckets": "\(LSTMShape.gapBuckets)", "actions": "view=0,cart=1,favourite=2,purchase=3",
            "input": "concat(embedding[category], action_embedding[action], gap_embedding[gap_bucket])",
            "gap_bucket": "0 for a user's first event, else min(23, 1 + floor(log2(1 + seconds)))",
        ]
        if let catalog {
            metadata["catalog_blake2b"] = catalog.digest
            metadata["catalog_categories"] = "\(catalog.categories)"
        }
        return Safetensors.encode(tensors(of: parameters), metadata: metadata)
    }
}
