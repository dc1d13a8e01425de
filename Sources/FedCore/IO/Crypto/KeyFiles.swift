internal import CSodium
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The key files of one node, kept together in one directory:
///
/// - `identity.secret` (mode 0600): the X25519 secret and the Ed25519 seed, base64. Never leaves the node.
/// - `identity.public` (mode 0644): the two public keys. Give it to the aggregator operator to enroll.
///
/// Both are text: comment lines start with `#`, fields are `name: value`. Secret values are decoded
/// straight into ``SecretBytes``, and every buffer that held them is wiped.
package struct KeyDirectory: Sendable {
    package static let secretFileName = "identity.secret"
    package static let publicFileName = "identity.public"
    static let secretFormat = "feddrift-node-secret-v1"
    static let publicFormat = "feddrift-node-public-v1"

    package let path: String
    package init(path: String) { self.path = path }

    package var secretFilePath: String { (path as NSString).appendingPathComponent(Self.secretFileName) }
    package var publicFilePath: String { (path as NSString).appendingPathComponent(Self.publicFileName) }

    /// Writes `identity`'s two files, creating the directory (mode 0700) if needed.
    ///
    /// - Parameter replacing: overwrite existing files; without it an existing file is an error.
    package func write(_ identity: NodeIdentity, replacing: Bool = false) throws(KeyFileError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw .writeFailed(path: path, errno: (error as NSError).code == 0 ? EIO : Int32((error as NSError).code))
        }
        // Capacity reserved up front: a reallocation while secrets are appended would free an unwiped buffer.
        var secretText: [UInt8] = []
        secretText.reserveCapacity(1024)
        defer { Sodium.wipe(&secretText) }
        secretText += Array("# FedDrift node secret keys. Keep this file private (mode 0600); never copy it off this node.\n".utf8)
        secretText += Array("format: \(Self.secretFormat)\nbox-secret: ".utf8)
        identity.box.secretKey.withUnsafeBytes { Self.appendBase64($0, to: &secretText) }
        secretText += Array("\nsign-seed: ".utf8)
        identity.signing.withSeed { Self.appendBase64($0, to: &secretText) }
        secretText.append(0x0A)
        try Self.writeFile(secretFilePath, secretText, mode: 0o600, replacing: replacing)

        let publicText = """
            # FedDrift node public keys. Safe to share: give this file to the aggregator operator to enroll this node.
            format: \(Self.publicFormat)
            box-public: \(identity.box.publicKey.base64)
            sign-public: \(identity.signing.publicKey.base64)

            """
        try Self.writeFile(publicFilePath, Array(publicText.utf8), mode: 0o644, replacing: replacing)
    }

    /// Reads the node's identity from `identity.secret`, refusing a file others may read.
    package func readIdentity() throws(KeyFileError) -> NodeIdentity {
        let path = secretFilePath
        var text = try Self.readFile(path, requirePrivate: true)
        defer { Sodium.wipe(&text) }
        let fields = try Self.fields(of: text, path: path, expectedFormat: Self.secretFormat)
        let box = try Self.decodeSecret(fields, name: "box-secret", count: BoxKeyPair.secretByteCount, in: text, path: path)
        let seed = try Self.decodeSecret(fields, name: "sign-seed", count: SigningKeyPair.seedByteCount, in: text, path: path)
        return NodeIdentity(box: BoxKeyPair(secret: box), signing: SigningKeyPair(seed: seed))
    }

    /// Reads the public identity from `identity.public`.
    package func readPublicIdentity() throws(KeyFileError) -> NodePublicIdentity {
        try Self.readPublicIdentity(file: publicFilePath)
    }

    /// Reads a public identity file (e.g. an agent's `identity.public` named in the aggregator's config).
    package static func readPublicIdentity(file path: String) throws(KeyFileError) -> NodePublicIdentity {
        let text = try readFile(path, requirePrivate: false)
        let fields = try fields(of: text, path: path, expectedFormat: publicFormat)
        func key(_ name: String) throws(KeyFileError) -> [UInt8] {
            guard let field = fields[name] else { throw .malformed(path: path, line: 0, reason: "missing field '\(name)'") }
            let value = String(decoding: text[field.range], as: UTF8.self)
            guard let data = Data(base64Encoded: value), data.count == 32 else {
                throw .malformed(path: path, line: field.line, reason: "'\(name)' is not a base64 32-byte key")
            }
            return Array(data)
        }
        do {
            return NodePublicIdentity(box: try BoxPublicKey(bytes: try key("box-public")),
                                      signing: try SigningPublicKey(bytes: try key("sign-public")))
        } catch {
            if let error = error as? KeyFileError { throw error }
            throw .malformed(path: path, line: 0, reason: "\(error)")
        }
    }

    // MARK: - Parsing (over bytes, so secret text never becomes a String)

    private struct Field { var range: Range<Int>; var line: Int }

    private static func fields(of text: [UInt8], path: String, expectedFormat: String) throws(KeyFileError)
        -> [String: Field]
    {
        var fields: [String: Field] = [:]
        var lineStart = 0
        var lineNumber = 0
        while lineStart < text.count {
            lineNumber += 1
            var lineEnd = lineStart
            while lineEnd < text.count && text[lineEnd] != 0x0A { lineEnd += 1 }
            var start = lineStart, end = lineEnd
            while start < end && (text[start] == 0x20 || text[start] == 0x09) { start += 1 }
            while end > start && (text[end - 1] == 0x20 || text[end - 1] == 0x09 || text[end - 1] == 0x0D) { end -= 1 }
            lineStart = lineEnd + 1
            if start == end || text[start] == UInt8(ascii: "#") { continue }
            guard let colon = text[start..<end].firstIndex(of: UInt8(ascii: ":")) else {
                throw .malformed(path: path, line: lineNumber, reason: "expected 'name: value'")
            }
            let name = String(decoding: text[start..<colon], as: UTF8.self)
            var valueStart = colon + 1
            while valueStart < end && text[valueStart] == 0x20 { valueStart += 1 }
            fields[name] = Field(range: valueStart..<end, line: lineNumber)
        }
        guard let format = fields["format"] else {
            throw .malformed(path: path, line: 0, reason: "no 'format:' line; this is not a FedDrift key file")
        }
        let found = String(decoding: text[format.range], as: UTF8.self)
        guard found == expectedFormat else { throw .wrongFormat(path: path, found: found, expected: expectedFormat) }
        return fields
    }

    private static func decodeSecret(
        _ fields: [String: Field], name: String, count: Int, in text: [UInt8], path: String
    ) throws(KeyFileError) -> SecretBytes {
        guard let field = fields[name] else { throw .malformed(path: path, line: 0, reason: "missing field '\(name)'") }
        return try SecretBytes(count: count) { (secret) throws(KeyFileError) in
            var decoded = 0
            let status = text.withUnsafeBytes { raw in
                sodium_base642bin(secret.bytePointer, count,
                                  raw.baseAddress!.advanced(by: field.range.lowerBound).assumingMemoryBound(to: CChar.self),
                                  field.range.count, nil, &decoded, nil, sodium_base64_VARIANT_ORIGINAL)
            }
            guard status == 0, decoded == count else {
                throw .malformed(path: path, line: field.line, reason: "'\(name)' is not a base64 \(count)-byte key")
            }
        }
    }

    private static func appendBase64(_ secret: UnsafeRawBufferPointer, to text: inout [UInt8]) {
        // sodium_base64_ENCODED_LEN for the padded original variant: 4·⌈n/3⌉ plus the terminator.
        var encoded = [UInt8](repeating: 0, count: 4 * ((secret.count + 2) / 3) + 1)
        defer { Sodium.wipe(&encoded) }
        encoded.withUnsafeMutableBytes { out in
            _ = sodium_bin2base64(out.baseAddress!.assumingMemoryBound(to: CChar.self), out.count,
                                  secret.bytePointer, secret.count,
                                  sodium_base64_VARIANT_ORIGINAL)
        }
        text += encoded.prefix { $0 != 0 }
    }

    // MARK: - File I/O

    private static func readFile(_ path: String, requirePrivate: Bool) throws(KeyFileError) -> [UInt8] {
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            throw errno == ENOENT ? .notFound(path: path) : .unreadable(path: path, errno: errno)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .unreadable(path: path, errno: errno) }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw .malformed(path: path, line: 0, reason: "not a regular file (a FIFO, device or directory): a key file must be a plain file")
        }
        if requirePrivate && info.st_mode & 0o077 != 0 {
            throw .insecurePermissions(path: path, mode: UInt32(info.st_mode & 0o777))
        }
        let size = Int(info.st_size)
        guard size <= 64 * 1024 else { throw .malformed(path: path, line: 0, reason: "file is \(size) bytes; too large for a key file") }
        var bytes = [UInt8](repeating: 0, count: size)
        var filled = 0
        while filled < size {
            let got = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!.advanced(by: filled), size - filled) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else {
                Sodium.wipe(&bytes)
                throw .unreadable(path: path, errno: got < 0 ? errno : EIO)
            }
            filled += got
        }
        return bytes
    }

    private static func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t, replacing: Bool) throws(KeyFileError) {
        var flags = O_WRONLY | O_CREAT | O_CLOEXEC
        flags |= replacing ? O_TRUNC : O_EXCL
        let fd = open(path, flags, mode)
        guard fd >= 0 else {
            throw errno == EEXIST ? .alreadyExists(path: path) : .writeFailed(path: path, errno: errno)
        }
        defer { close(fd) }
        // An existing file keeps its old mode under O_TRUNC: set it explicitly.
        guard fchmod(fd, mode) == 0 else { throw .writeFailed(path: path, errno: errno) }
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress!.advanced(by: written), bytes.count - written) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw .writeFailed(path: path, errno: errno) }
            written += count
        }
        guard fsync(fd) == 0 else { throw .writeFailed(path: path, errno: errno) }
    }
}
