import Foundation

/// Why a model file was refused.
package enum ModelFileError: Error, Equatable, CustomStringConvertible, Sendable {
    case notAModelFile(path: String)
    case unsupportedVersion(path: String, found: UInt16, supported: UInt16)
    case truncated(path: String, expected: Int, found: Int)
    case checksumMismatch(path: String)
    case invalidShape(path: String, reason: String)
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
        case let .io(path, reason): "\(path): \(reason)"
        }
    }
}

/// The on-disk and on-wire model format: versioned, checksummed, little-endian float32.
///
/// Layout: magic `FDLM` · format u16 · scalar u8 (1 = float32) · reserved u8 · categories, embedding,
/// hidden, action embedding, gap embedding (u32 each) · model version u64 · parameter count u64 ·
/// parameters (f32 LE, FedModel's `ParameterLayout` order) · CRC-32 (IEEE) of everything before it, u32.
/// The CRC catches corruption; authenticity comes from the sealed envelopes and signed broadcasts.
///
/// This codec knows the layout, not the model: the node layer maps ``Contents`` to and from
/// `LSTMParameters` and checks the parameter count against the shape.
package enum ModelFile {
    /// A decoded model file: the five shape sizes in header order, the version and the parameters.
    package struct Contents: Sendable, Equatable {
        /// categories, embedding, hidden, action embedding, gap embedding.
        package var sizes: [Int]
        package var modelVersion: UInt64
        package var values: [Float]

        package init(sizes: [Int], modelVersion: UInt64, values: [Float]) {
            precondition(sizes.count == 5, "a model file has five shape sizes")
            self.sizes = sizes
            self.modelVersion = modelVersion
            self.values = values
        }
    }

    static let magic: [UInt8] = Array("FDLM".utf8)
    package static let formatVersion: UInt16 = 1
    package static let headerSize = 4 + 2 + 1 + 1 + 5 * 4 + 8 + 8

    package static func encode(_ contents: Contents) -> [UInt8] {
        var writer = ByteWriter(capacity: headerSize + contents.values.count * 4 + 4)
        writer.write(raw: magic)
        writer.write(formatVersion)
        writer.write(UInt8(1))
        writer.write(UInt8(0))
        for size in contents.sizes { writer.write(UInt32(size)) }
        writer.write(contents.modelVersion)
        writer.write(UInt64(contents.values.count))
        var bytes = writer.bytes
        contents.values.withUnsafeBytes { raw in bytes.append(contentsOf: raw) }  // x86-64 and arm64: little-endian
        var crc = ByteWriter(capacity: 4)
        crc.write(CRC32.checksum(bytes))
        return bytes + crc.bytes
    }

    package static func contents(of bytes: [UInt8], path: String = "model") throws(ModelFileError) -> Contents {
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
                let modelVersion = try reader.read(UInt64.self, field: "model version")
                let count = try reader.read(UInt64.self, field: "parameter count")
                guard count <= 1 << 32 else {
                    throw ModelFileError.invalidShape(path: path, reason: "\(count) parameters")
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
                return Contents(sizes: sizes, modelVersion: modelVersion, values: values)
            } catch let error as ModelFileError {
                throw error
            } catch {
                throw ModelFileError.truncated(path: path, expected: headerSize + 4, found: raw.count)
            }
        }
    }

    /// Writes bytes made by ``encode(_:)`` atomically (temporary file, fsync, rename).
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

    /// The file's bytes, or why they cannot be read.
    package static func bytes(at path: String) throws(ModelFileError) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .io(path: path, reason: "cannot read the file (missing or unreadable)")
        }
        return Array(data)
    }
}
