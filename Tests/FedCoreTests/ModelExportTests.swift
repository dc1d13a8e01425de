@testable import FedIO
@testable import FedModel
@testable import FedNode
import Foundation
import Testing

@Suite("Model export: safetensors as the format specifies it, with PyTorch's state_dict names")
struct ModelExportTests {
    @Test("The bytes follow the specification: u64 LE header size, JSON header padded to 8 bytes, contiguous F32 LE data in order")
    func layout() throws {
        let tensors = [Safetensors.Tensor(name: "b", shape: [2], values: [1.5, -2]),
                       Safetensors.Tensor(name: "a", shape: [1, 3], values: [0, .leastNonzeroMagnitude, 3])]
        let bytes = Safetensors.encode(tensors, metadata: ["format": "x"])
        let size = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        #expect((8 + size) % 8 == 0, "the data must start 8-byte aligned")
        let header = try #require(String(bytes: bytes[8..<(8 + size)], encoding: .utf8))
        #expect(header.hasPrefix("{") && header.trimmingCharacters(in: .whitespaces).hasSuffix("}"))
        let close = try #require(header.lastIndex(of: "}"))
        #expect(header[close...].dropFirst().allSatisfy { $0 == " " }, "padding is spaces")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(header.utf8)) as? [String: Any])
        #expect((json["__metadata__"] as? [String: String]) == ["format": "x"])
        let b = try #require(json["b"] as? [String: Any]), a = try #require(json["a"] as? [String: Any])
        #expect(b["dtype"] as? String == "F32" && b["shape"] as? [Int] == [2] && b["data_offsets"] as? [Int] == [0, 8])
        #expect(a["dtype"] as? String == "F32" && a["shape"] as? [Int] == [1, 3] && a["data_offsets"] as? [Int] == [8, 20])
        // The buffer: the tensors in the order given, float32 little-endian, nothing after.
        var expected: [UInt8] = []
        for value: Float in [1.5, -2, 0, .leastNonzeroMagnitude, 3] {
            withUnsafeBytes(of: value.bitPattern.littleEndian) { expected += $0 }
        }
        #expect(Array(bytes[(8 + size)...]) == expected)
        let decoded = try Safetensors.decode(bytes)
        #expect(decoded.tensors == tensors && decoded.metadata == ["format": "x"])
    }

    @Test("A FedDrift model exports under nn.Embedding/nn.LSTM/nn.Linear names and shapes, values unchanged")
    func pytorchNames() throws {
        let shape = LSTMShape(categories: 7, embedding: 3, hidden: 2, actionEmbedding: 2, gapEmbedding: 1)
        let parameters = LSTMParameters<Float>(shape: shape, seed: 5)
        let (tensors, metadata) = try Safetensors.decode(ModelExport.safetensors(parameters, modelVersion: 9))
        let shapes = Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, $0.shape) })
        #expect(shapes == [
            "embedding.weight": [7, 3], "action_embedding.weight": [4, 2], "gap_embedding.weight": [24, 1],
            "lstm.weight_ih_l0": [8, 6], "lstm.weight_hh_l0": [8, 2], "lstm.bias_ih_l0": [8], "lstm.bias_hh_l0": [8],
            "linear.weight": [7, 2], "linear.bias": [7],
        ])
        #expect(tensors.flatMap(\.values) == parameters.values, "values in FedDrift's (PyTorch's) order, unchanged")
        #expect(metadata["model_version"] == "9" && metadata["format"] == "feddrift-lstm" && metadata["hidden"] == "2")
    }

    @Test("Truncated or inconsistent files are refused")
    func refusals() {
        let good = Safetensors.encode([.init(name: "w", shape: [2], values: [1, 2])])
        #expect(throws: Safetensors.Failure.self) { try Safetensors.decode(Array(good.prefix(5))) }
        #expect(throws: Safetensors.Failure.self) { try Safetensors.decode(Array(good.dropLast(4))) }
        var wrongSize = good
        wrongSize[0] = 0xFF
        #expect(throws: Safetensors.Failure.self) { try Safetensors.decode(wrongSize) }
    }
}
