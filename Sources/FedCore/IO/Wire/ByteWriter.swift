/// Appends little-endian fields to a byte array. Pure encoding: no I/O.
package struct ByteWriter: Sendable {
    package private(set) var bytes: [UInt8]

    package init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    package mutating func write<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    package mutating func write(_ value: Double) { write(value.bitPattern) }
    package mutating func write(_ value: Float) { write(value.bitPattern) }

    /// Appends raw bytes with no length prefix.
    package mutating func write(raw: some Collection<UInt8>) { bytes.append(contentsOf: raw) }

    /// Appends bytes after a `UInt32` length.
    package mutating func write(lengthPrefixed raw: some Collection<UInt8>) {
        write(UInt32(raw.count))
        bytes.append(contentsOf: raw)
    }

    /// Appends a UTF-8 string after a `UInt16` length.
    package mutating func write(string: String) {
        let utf8 = Array(string.utf8)
        precondition(utf8.count <= Int(UInt16.max), "string field too long")
        write(UInt16(utf8.count))
        bytes.append(contentsOf: utf8)
    }
}

/// Reads little-endian fields from a byte buffer, throwing ``WireError`` on malformed input.
package struct ByteReader {
    private let bytes: UnsafeRawBufferPointer
    package private(set) var offset: Int = 0

    /// Reads from `bytes`, which must stay valid while the reader is used.
    package init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    package var remaining: Int { bytes.count - offset }

    package mutating func read<T: FixedWidthInteger>(_: T.Type = T.self, field: String) throws(WireError) -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw .truncated(field: field, needed: size, available: remaining) }
        let value = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += size
        return T(littleEndian: value)
    }

    package mutating func readDouble(field: String) throws(WireError) -> Double {
        Double(bitPattern: try read(UInt64.self, field: field))
    }

    /// Reads `count` raw bytes.
    package mutating func read(count: Int, field: String) throws(WireError) -> [UInt8] {
        guard count >= 0, remaining >= count else {
            throw .truncated(field: field, needed: count, available: remaining)
        }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    /// Reads `count` little-endian float32 values with one copy (little-endian hosts only).
    package mutating func readFloats(count: Int, field: String) throws(WireError) -> [Float] {
        let byteCount = count * 4
        guard count >= 0, remaining >= byteCount else {
            throw .truncated(field: field, needed: byteCount, available: remaining)
        }
        let start = offset
        offset += byteCount
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            UnsafeMutableRawBufferPointer(buffer).copyMemory(
                from: UnsafeRawBufferPointer(rebasing: bytes[start..<(start + byteCount)]))
            initialized = count
        }
    }

    /// Reads bytes after a `UInt32` length, refusing lengths above `limit`.
    package mutating func readLengthPrefixed(field: String, limit: Int) throws(WireError) -> [UInt8] {
        let count = Int(try read(UInt32.self, field: field))
        guard count <= limit else { throw .invalidValue(field: field, reason: "length \(count) exceeds \(limit)") }
        return try read(count: count, field: field)
    }

    /// Reads a UTF-8 string after a `UInt16` length, refusing lengths above `limit` bytes.
    package mutating func readString(field: String, limit: Int) throws(WireError) -> String {
        let count = Int(try read(UInt16.self, field: field))
        guard count <= limit else { throw .invalidValue(field: field, reason: "length \(count) exceeds \(limit)") }
        let raw = try read(count: count, field: field)
        guard let string = String(validating: raw, as: UTF8.self) else {
            throw .invalidValue(field: field, reason: "not valid UTF-8")
        }
        return string
    }

    /// Throws unless every byte was read.
    package func finish() throws(WireError) {
        guard remaining == 0 else { throw .trailingBytes(count: remaining) }
    }
}
