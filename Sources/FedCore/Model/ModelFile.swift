import Foundation

/// Why a model file was refused.
package enum ModelFileError: Error, Equatable, CustomStringConvertible, Sendable {
    case notAModelFile(path: String)
    case unsupportedVersion(path: String, found: UInt16, supported: UInt16)
    case truncated(path: String, expected: Int, found: Int)
    case checksumMismatch(path: String)
    case invalidShape(path: String, reason: String)
    case shapeMismatch(path: String, expected: LSTMShape, found: LSTMShape)
    case io(path: String, reason: String)

    package var description: String {
        switch self {
        case let .notAModelFile(path): "\(path) is not a FedDrift model file (bad magic)"
        case let .unsupportedVersion(path, found, supported):
            "\(path) has model format \(found); this build reads format \(supported): upgrade FedDrift"
        case let .truncated(path, expected, found):
            "\(path) is truncated: \(found) bytes, the header announces \(expected); restore it or export it again"
        case let .checksumMismatch(path): "\(path) is corrupt (checksum mismatch); restore it or export it again"
        case let .invalidShape(path, reason): "\(path) declares an impossible model shape: \(reason)"
        case let .shapeMismatch(path, expected, found):
            "\(path) holds a model of shape \(found), but \(expected) is configured"
        case let .io(path, reason): "\(path): \(reason)"
        }
    }
}

/// The on-disk and on-wire model format: versioned, checksummed, little-endian float32.
///
/// Layout: magic `FDLM` · format u16 · scalar u8 (1 = float32) · reserved u8 · categories, embedding,
/// hidden, action embedding, gap embedding (u32 each) · model version u64 · parameter count u64 ·
/// parameters (f32 LE, ``ParameterLayout`` order) · CRC-32 (IEEE) of everything before it, u32.
/// The CRC catches corruption; authenticity comes from the sealed envelopes and signed broadcasts.
package enum ModelFile {
    static let magic: [UInt8] = Array("FDLM".utf8)
    package static let formatVersion: UInt16 = 1
    static let headerSize = 4 + 2 + 1 + 1 + 5 * 4 + 8 + 8

    package static func encode(_ parameters: LSTMParameters<Float>, modelVersion: UInt64) -> [UInt8] {
        let shape = parameters.shape
        var writer = ByteWriter(capacity: headerSize + parameters.values.count * 4 + 4)
        writer.write(raw: magic)
        writer.write(formatVersion)
        writer.write(UInt8(1))
        writer.write(UInt8(0))
        for size in [shape.categories, shape.embedding, shape.hidden, shape.actionEmbedding, shape.gapEmbedding] {
            writer.write(UInt32(size))
        }
        writer.write(modelVersion)
        writer.write(UInt64(parameters.values.count))
        var bytes = writer.bytes
        parameters.values.withUnsafeBytes { raw in bytes.append(contentsOf: raw) }  // x86-64 and arm64: little-endian
        var crc = ByteWriter(capacity: 4)
        crc.write(CRC32.checksum(bytes))
        return bytes + crc.bytes
    }

    package static func decode(_ bytes: [UInt8], path: String = "model") throws(ModelFileError)
        -> (parameters: LSTMParameters<Float>, modelVersion: UInt64)
    {
        guard bytes.count >= 4, Array(bytes[0..<4]) == magic else { throw .notAModelFile(path: path) }
        guard bytes.count >= headerSize + 4 else { throw .truncated(path: path, expected: headerSize + 4, found: bytes.count) }
        return try bytes.withBytes { (raw) throws(ModelFileError) in
            var reader = ByteReader(raw)
            do {
                _ = try reader.read(count: 4, field: "magic")
                let format = try reader.read(UInt16.self, field: "format")
                guard format == formatVersion else {
                    throw ModelFileError.unsupportedVersion(path: path, found: format, supported: formatVersion)
                }
                let scalar = try reader.read(UInt8.self, field: "scalar")
                _ = try reader.read(UInt8.self, field: "reserved")
                guard scalar == 1 else { throw ModelFileError.invalidShape(path: path, reason: "scalar type \(scalar)") }
                var sizes: [Int] = []
                for field in ["categories", "embedding", "hidden", "action", "gap"] {
                    sizes.append(Int(try reader.read(UInt32.self, field: field)))
                }
                guard sizes[0] > 1, sizes[0] <= 1 << 20, sizes[1] > 0, sizes[1] <= 4096, sizes[2] > 0, sizes[2] <= 4096,
                      sizes[3] <= 4096, sizes[4] <= 4096 else {
                    throw ModelFileError.invalidShape(path: path, reason: "sizes \(sizes)")
                }
                let shape = LSTMShape(categories: sizes[0], embedding: sizes[1], hidden: sizes[2],
                                      actionEmbedding: sizes[3], gapEmbedding: sizes[4])
                let modelVersion = try reader.read(UInt64.self, field: "model version")
                let count = try reader.read(UInt64.self, field: "parameter count")
                guard count == UInt64(shape.layout.count) else {
                    throw ModelFileError.invalidShape(path: path, reason: "\(count) parameters for shape \(shape)")
                }
                let expected = headerSize + Int(count) * 4 + 4
                guard raw.count == expected else {
                    throw ModelFileError.truncated(path: path, expected: expected, found: raw.count)
                }
                let stored = raw.loadUnaligned(fromByteOffset: expected - 4, as: UInt32.self).littleEndian
                guard CRC32.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<(expected - 4)])) == stored else {
                    throw ModelFileError.checksumMismatch(path: path)
                }
                let values = [Float](unsafeUninitializedCapacity: Int(count)) { buffer, initialized in
                    UnsafeMutableRawBufferPointer(buffer).copyMemory(
                        from: UnsafeRawBufferPointer(rebasing: raw[headerSize..<(expected - 4)]))
                    initialized = Int(count)
                }
                return (LSTMParameters(shape: shape, values: values), modelVersion)
            } catch let error as ModelFileError {
                throw error
            } catch {
                throw ModelFileError.truncated(path: path, expected: headerSize + 4, found: raw.count)
            }
        }
    }

    /// Writes atomically: a temporary file in the same directory, fsync, then rename over `path`.
    package static func write(_ parameters: LSTMParameters<Float>, modelVersion: UInt64, to path: String)
        throws(ModelFileError)
    {
        try write(encoded: encode(parameters, modelVersion: modelVersion), to: path)
    }

    /// Writes bytes made by ``encode(_:modelVersion:)`` atomically (temporary file, fsync, rename).
    package static func write(encoded bytes: [UInt8], to path: String) throws(ModelFileError) {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, bytes.count - written) }
            if result < 0 && errno == EINTR { continue }
            guard result > 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                unlink(temporary)
                throw .io(path: path, reason: reason)
            }
            written += result
        }
        guard fsync(fd) == 0, close(fd) == 0, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw .io(path: path, reason: reason)
        }
    }

    package static func read(from path: String) throws(ModelFileError) -> (parameters: LSTMParameters<Float>, modelVersion: UInt64) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .io(path: path, reason: "cannot read the file (missing or unreadable)")
        }
        return try decode(Array(data), path: path)
    }
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), slicing-by-8: eight bytes per step
/// through eight tables (≈ 2 GB/s, against ≈ 0.4 GB/s a byte at a time, which made checksumming a
/// medium model a tenth of an aggregator round).
package enum CRC32 {
    /// `tables[k][b]`: the CRC of byte b followed by k zero bytes.
    private static let tables: [UInt32] = {
        var tables = [UInt32](repeating: 0, count: 8 * 256)
        for index in 0..<256 {
            var value = UInt32(index)
            for _ in 0..<8 { value = value & 1 == 1 ? (value >> 1) ^ 0xEDB8_8320 : value >> 1 }
            tables[index] = value
        }
        for k in 1..<8 {
            for index in 0..<256 {
                let previous = tables[(k - 1) * 256 + index]
                tables[k * 256 + index] = (previous >> 8) ^ tables[Int(previous & 0xFF)]
            }
        }
        return tables
    }()

    package static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        tables.withUnsafeBufferPointer { t in
            var offset = 0
            let count = bytes.count
            while offset + 8 <= count {
                let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
                let low = UInt32(truncatingIfNeeded: word) ^ crc, high = UInt32(truncatingIfNeeded: word >> 32)
                crc = t[7 * 256 + Int(low & 0xFF)] ^ t[6 * 256 + Int((low >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((low >> 16) & 0xFF)] ^ t[4 * 256 + Int(low >> 24)]
                    ^ t[3 * 256 + Int(high & 0xFF)] ^ t[2 * 256 + Int((high >> 8) & 0xFF)]
                    ^ t[256 + Int((high >> 16) & 0xFF)] ^ t[Int(high >> 24)]
                offset += 8
            }
            while offset < count {
                crc = t[Int((crc ^ UInt32(bytes[offset])) & 0xFF)] ^ (crc >> 8)
                offset += 1
            }
        }
        return crc ^ 0xFFFF_FFFF
    }

    package static func checksum(_ bytes: [UInt8]) -> UInt32 { bytes.withUnsafeBytes { checksum($0) } }
}
