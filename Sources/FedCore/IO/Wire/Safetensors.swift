import Foundation

/// The safetensors format (Hugging Face; https://github.com/huggingface/safetensors, "Format"): an
/// unsigned 64-bit little-endian header size N, then N bytes of UTF-8 JSON mapping each tensor's name to
/// `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to the byte buffer that follows,
/// tensors contiguous and in order) plus an optional `"__metadata__"` object of string → string, then
/// the byte buffer. The JSON is padded with spaces so the buffer starts 8-byte aligned. FedDrift writes
/// float32 only (`"F32"`, little-endian), tensors in the order given, keys in the JSON sorted.
package enum Safetensors {
    package struct Tensor: Sendable, Equatable {
        package var name: String
        package var shape: [Int]
        package var values: [Float]

        package init(name: String, shape: [Int], values: [Float]) {
            (self.name, self.shape, self.values) = (name, shape, values)
        }
    }

    package enum Failure: Error, Equatable, CustomStringConvertible {
        case malformed(String)

        package var description: String {
            switch self { case let .malformed(reason): "not a valid safetensors file: \(reason)" }
        }
    }

    /// The file's bytes.
    package static func encode(_ tensors: [Tensor], metadata: [String: String] = [:]) -> [UInt8] {
        var header = "{"
        var entries: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.sorted { $0.key < $1.key }.map { "\(json($0.key)):\(json($0.value))" }
            entries.append("\"__metadata__\":{" + pairs.joined(separator: ",") + "}")
        }
        var offset = 0
        var placed: [(String, String)] = []
        for tensor in tensors {
            let end = offset + tensor.values.count * 4
            placed.append((tensor.name, "\(json(tensor.name)):{\"dtype\":\"F32\",\"shape\":[\(tensor.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(end)]}"))
            offset = end
        }
        entries += placed.sorted { $0.0 < $1.0 }.map(\.1)
        header += entries.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        while (8 + headerBytes.count) % 8 != 0 { headerBytes.append(0x20) }
        var writer = ByteWriter(capacity: 8 + headerBytes.count + offset)
        writer.write(UInt64(headerBytes.count))
        writer.write(raw: headerBytes)
        for tensor in tensors {
            tensor.values.withUnsafeBytes { writer.write(raw: $0) }  // float32, little-endian hosts only
        }
        return writer.bytes
    }

    /// Reads a float32 file back: tensors in buffer order, and the metadata.
    package static func decode(_ bytes: [UInt8]) throws(Failure) -> (tensors: [Tensor], metadata: [String: String]) {
        guard bytes.count >= 8 else { throw .malformed("shorter than its 8-byte header size") }
        let size = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard size <= UInt64(bytes.count - 8) else { throw .malformed("header size \(size) exceeds the file") }
        let body = 8 + Int(size)
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: Data(bytes[8..<body])) as? [String: Any] else {
                throw Failure.malformed("the header is not a JSON object")
            }
            object = parsed
        } catch let error as Failure {
            throw error
        } catch {
            throw .malformed("the header is not JSON: \(error.localizedDescription)")
        }
        let metadata = (object["__metadata__"] as? [String: String]) ?? [:]
        var tensors: [(begin: Int, tensor: Tensor)] = []
        for (name, value) in object where name != "__metadata__" {
            guard let entry = value as? [String: Any], entry["dtype"] as? String == "F32",
                  let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2,
                  offsets[0] >= 0, offsets[0] <= offsets[1], body + offsets[1] <= bytes.count,
                  (offsets[1] - offsets[0]) == 4 * shape.reduce(1, *)
            else { throw .malformed("tensor '\(name)' has a bad entry (F32 only)") }
            let values = [Float](unsafeUninitializedCapacity: (offsets[1] - offsets[0]) / 4) { buffer, count in
                bytes.withUnsafeBytes { raw in
                    UnsafeMutableRawBufferPointer(buffer).copyMemory(
                        from: UnsafeRawBufferPointer(rebasing: raw[(body + offsets[0])..<(body + offsets[1])]))
                }
                count = (offsets[1] - offsets[0]) / 4
            }
            tensors.append((offsets[0], Tensor(name: name, shape: shape, values: values)))
        }
        return (tensors.sorted { $0.begin < $1.begin }.map(\.tensor), metadata)
    }

    private static func json(_ string: String) -> String {
        var out = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case let c where c.value < 0x20: out += String(format: "\\u%04x", c.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
