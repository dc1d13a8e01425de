/// The sizes of the next-interest model.
///
/// Per event the input is the category embedding, optionally concatenated with an embedding of the
/// action type (view, cart, favourite, purchase) and of a log-scaled time-gap bucket. One LSTM layer
/// (PyTorch gate order i, f, g, o, both bias vectors) feeds a linear layer and a softmax over the
/// categories, predicting the next event's category.
package struct LSTMShape: Sendable, Codable, Equatable, Hashable, CustomStringConvertible {
    /// Output classes: model category indices `0..<categories`. The catalog maps the most frequent
    /// platform categories to the first indices and everything else to the last (out of vocabulary).
    package var categories: Int
    package var embedding: Int
    package var hidden: Int
    /// Size of the action-type embedding; 0 turns the input off.
    package var actionEmbedding: Int
    /// Size of the time-gap embedding; 0 turns the input off.
    package var gapEmbedding: Int

    package static let actionCount = 4
    /// Log-scaled gap buckets: 0 for the first event, then ⌊log₂(1 + seconds)⌋ capped.
    package static let gapBuckets = 24

    package init(categories: Int, embedding: Int, hidden: Int, actionEmbedding: Int = 0, gapEmbedding: Int = 0) {
        precondition(categories > 1 && embedding > 0 && hidden > 0 && actionEmbedding >= 0 && gapEmbedding >= 0)
        self.categories = categories
        self.embedding = embedding
        self.hidden = hidden
        self.actionEmbedding = actionEmbedding
        self.gapEmbedding = gapEmbedding
    }

    /// C = 1024, E = 32, H = 64, with 4-wide action and gap embeddings.
    package static let small = LSTMShape(categories: 1024, embedding: 32, hidden: 64, actionEmbedding: 4, gapEmbedding: 4)
    /// C = 4096, E = 64, H = 128, with 8-wide action and gap embeddings.
    package static let medium = LSTMShape(categories: 4096, embedding: 64, hidden: 128, actionEmbedding: 8,
                                          gapEmbedding: 8)

    package static func preset(named name: String) -> LSTMShape? {
        switch name {
        case "small": .small
        case "medium": .medium
        default: nil
        }
    }

    /// Width of the LSTM input: D = E + action + gap embedding sizes.
    package var inputSize: Int { embedding + actionEmbedding + gapEmbedding }

    package var layout: ParameterLayout { ParameterLayout(self) }

    package var description: String {
        "C=\(categories) E=\(embedding) H=\(hidden) action=\(actionEmbedding) gap=\(gapEmbedding)"
    }
}

/// Where each tensor lives in the flat parameter vector, in PyTorch order:
/// embedding [C,E], action embedding [4,Ea], gap embedding [G,Eg], weight_ih [4H,D], weight_hh [4H,H],
/// bias_ih [4H], bias_hh [4H], linear weight [C,H], linear bias [C]. Absent optional inputs take no space.
package struct ParameterLayout: Sendable, Equatable {
    package let shape: LSTMShape
    package let embedding: Range<Int>
    package let actionEmbedding: Range<Int>
    package let gapEmbedding: Range<Int>
    package let weightIH: Range<Int>
    package let weightHH: Range<Int>
    package let biasIH: Range<Int>
    package let biasHH: Range<Int>
    package let outputWeight: Range<Int>
    package let outputBias: Range<Int>
    package let count: Int

    init(_ shape: LSTMShape) {
        self.shape = shape
        var offset = 0
        func take(_ size: Int) -> Range<Int> {
            defer { offset += size }
            return offset..<(offset + size)
        }
        let gates = 4 * shape.hidden
        embedding = take(shape.categories * shape.embedding)
        actionEmbedding = take(LSTMShape.actionCount * shape.actionEmbedding)
        gapEmbedding = take(LSTMShape.gapBuckets * shape.gapEmbedding)
        weightIH = take(gates * shape.inputSize)
        weightHH = take(gates * shape.hidden)
        biasIH = take(gates)
        biasHH = take(gates)
        outputWeight = take(shape.categories * shape.hidden)
        outputBias = take(shape.categories)
        count = offset
    }

    /// The tensors in order, with names matching the PyTorch reference.
    package var tensors: [(name: String, range: Range<Int>)] {
        [("embedding.weight", embedding), ("action_embedding.weight", actionEmbedding),
         ("gap_embedding.weight", gapEmbedding), ("lstm.weight_ih", weightIH), ("lstm.weight_hh", weightHH),
         ("lstm.bias_ih", biasIH), ("lstm.bias_hh", biasHH), ("linear.weight", outputWeight),
         ("linear.bias", outputBias)].filter { !$0.1.isEmpty }
    }
}
