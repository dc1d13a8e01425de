package import FedIO
package import FedModel

/// The model layer's parameters in the ``ModelFile`` format: the shape goes into the header's five
/// sizes, and a decoded file is accepted only when its parameter count fits the shape it declares.
extension ModelFile {
    package static func encode(_ parameters: LSTMParameters<Float>, modelVersion: UInt64) -> [UInt8] {
        let shape = parameters.shape
        return encode(Contents(
            sizes: [shape.categories, shape.embedding, shape.hidden, shape.actionEmbedding, shape.gapEmbedding],
            modelVersion: modelVersion, values: parameters.values))
    }

    package static func decode(_ bytes: [UInt8], path: String = "model") throws(ModelFileError)
        -> (parameters: LSTMParameters<Float>, modelVersion: UInt64)
    {
        let contents = try contents(of: bytes, path: path)
        let sizes = contents.sizes
        let shape = LSTMShape(categories: sizes[0], embedding: sizes[1], hidden: sizes[2], actionEmbedding: sizes[3],
                              gapEmbedding: sizes[4])
        guard contents.values.count == shape.layout.count else {
            throw .invalidShape(path: path, reason: "\(contents.values.count) parameters for shape \(shape)")
        }
        return (LSTMParameters(shape: shape, values: contents.values), contents.modelVersion)
    }

    /// Writes atomically: a temporary file in the same directory, fsync, then rename over `path`.
    package static func write(_ parameters: LSTMParameters<Float>, modelVersion: UInt64, to path: String)
        throws(ModelFileError)
    {
        try write(encoded: encode(parameters, modelVersion: modelVersion), to: path)
    }

    package static func read(from path: String) throws(ModelFileError)
        -> (parameters: LSTMParameters<Float>, modelVersion: UInt64)
    {
        try decode(try bytes(at: path), path: path)
    }
}
