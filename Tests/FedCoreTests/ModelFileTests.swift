@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

@Suite("Model file")
struct ModelFileTests {
    private let parameters = LSTMParameters<Float>(shape: LSTMShape(categories: 13, embedding: 4, hidden: 6,
                                                                     actionEmbedding: 2, gapEmbedding: 3), seed: 8)

    @Test("CRC-32 matches the standard check value")
    func crcCheckValue() { #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926) }

    @Test("Slicing-by-8 CRC-32 equals the bit-by-bit definition at every length and alignment")
    func crcMatchesDefinition() {
        func bitwise(_ bytes: ArraySlice<UInt8>) -> UInt32 {
            var crc: UInt32 = 0xFFFF_FFFF
            for byte in bytes {
                crc ^= UInt32(byte)
                for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
            }
            return crc ^ 0xFFFF_FFFF
        }
        var random = SplitMix64(seed: 11)
        let bytes = (0..<300).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        for start in 0..<9 {
            for length in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 255, 290] {
                let slice = bytes[start..<(start + length)]
                #expect(Array(slice).withUnsafeBytes { CRC32.checksum($0) } == bitwise(slice), "start \(start) length \(length)")
            }
        }
    }

    @Test("Encode then decode returns the same parameters, shape and version; files are written atomically")
    func roundTrip() throws {
        let decoded = try ModelFile.decode(ModelFile.encode(parameters, modelVersion: 42))
        #expect(decoded.parameters == parameters)
        #expect(decoded.modelVersion == 42)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feddrift-model-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("global.fdm").path
        try ModelFile.write(parameters, modelVersion: 7, to: path)
        try ModelFile.write(parameters, modelVersion: 8, to: path)
        #expect(try ModelFile.read(from: path).modelVersion == 8)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["global.fdm"])
    }

    @Test("A flipped byte anywhere is refused as corrupt")
    func corruption() {
        let bytes = ModelFile.encode(parameters, modelVersion: 1)
        for position in [ModelFile.headerSize + 5, bytes.count / 2, bytes.count - 5] {
            var copy = bytes
            copy[position] ^= 0x10
            #expect(throws: ModelFileError.checksumMismatch(path: "model")) { try ModelFile.decode(copy) }
        }
    }

    @Test("Truncated, foreign and future-format files are refused with their own errors")
    func badFiles() {
        let bytes = ModelFile.encode(parameters, modelVersion: 1)
        #expect(throws: ModelFileError.truncated(path: "model", expected: bytes.count, found: bytes.count - 1)) {
            try ModelFile.decode(Array(bytes.dropLast()))
        }
        #expect(throws: ModelFileError.notAModelFile(path: "model")) { try ModelFile.decode(Array("hello world".utf8)) }
        var future = bytes
        future[4] = 9
        #expect(throws: ModelFileError.unsupportedVersion(path: "model", found: 9, supported: 1)) {
            try ModelFile.decode(future)
        }
        var impossible = bytes
        impossible[12] = 0  // bytes 12..15 hold the embedding size: make it 0
        let error = #expect(throws: ModelFileError.self) { try ModelFile.decode(impossible) }
        if case .invalidShape = error {} else { Issue.record("expected invalidShape, got \(String(describing: error))") }
        #expect(throws: ModelFileError.self) { try ModelFile.read(from: "/nonexistent/model.fdm") }
    }
}
