import FedLogic
import Foundation

/// `postgres:` in the aggregator's configuration: keep the federation's state in PostgreSQL instead of
/// `state_directory/checkpoint.sqlite`, so that two aggregator processes can share it, one leading and one
/// standing by (docs/OPERATIONS.md, "A highly available aggregator").
/// - `host` (required), `port` (default 5432), `database` (default `feddrift`), `user` (required).
/// - `password_file` (path, optional, **secret**): the user's password, so that it is in no configuration file.
/// - `ca_file` (path, optional): the CA that signed the server's certificate. A server that is not on loopback
///   is reached over TLS only (verified against `ca_file`, or the system's roots without it).
/// - `insecure_plaintext` (default false): `true` allows a server off loopback without TLS.
/// - `lease_seconds` (1…60, default 5): how long the leader's lease lasts without renewal. The leader renews it
///   every third of that; a standby takes over when it ran out, or at once when the leader's database session
///   is gone (a crashed leader). A leader that cannot renew in time stops.
/// - `node` (default the host name and process id): this process's name in the lease, in logs and status.
package struct PostgresConfiguration: Sendable, Decodable, Equatable {
    package var host: String
    package var port = 5432
    package var database = "feddrift"
    package var user: String
    package var passwordFile: String?
    package var caFile: String?
    package var insecurePlaintext = false
    package var leaseSeconds = 5.0
    package var node: String?

    package init(host: String, port: Int, user: String) {
        (self.host, self.port, self.user) = (host, port, user)
    }

    package init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        host = try c.decode(String.self, forKey: .host)
        port = try c.decodeIfPresent(Int.self, forKey: .port) ?? port
        database = try c.decodeIfPresent(String.self, forKey: .database) ?? database
        user = try c.decode(String.self, forKey: .user)
        passwordFile = try c.decodeIfPresent(String.self, forKey: .passwordFile)
        caFile = try c.decodeIfPresent(String.self, forKey: .caFile)
        insecurePlaintext = try c.decodeIfPresent(Bool.self, forKey: .insecurePlaintext) ?? false
        leaseSeconds = try c.decodeIfPresent(Double.self, forKey: .leaseSeconds) ?? leaseSeconds
        node = try c.decodeIfPresent(String.self, forKey: .node)
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case host, port, database, user, node
        case passwordFile = "password_file", caFile = "ca_file", insecurePlaintext = "insecure_plaintext"
        case leaseSeconds = "lease_seconds"
    }

    /// The server is on this machine: plaintext reaches nobody else.
    package var isLoopback: Bool { ["127.0.0.1", "localhost", "::1"].contains(host) }

    /// Whether connections use TLS: always off loopback (unless `insecure_plaintext`), and with a `ca_file`.
    package var usesTLS: Bool { caFile != nil || (!isLoopback && !insecurePlaintext) }

    /// This process's name in the lease.
    package var nodeName: String {
        node ?? "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier)"
    }

    /// Where the state is, for logs (no password).
    package var location: String { "postgres://\(user)@\(host):\(port)/\(database)" }

    package func validate() throws(ConfigError) {
        guard !host.isEmpty, !host.contains("/") else {
            throw .invalidValue(key: "postgres.host", value: host, reason: "a host name or address")
        }
        guard (1...65_535).contains(port) else {
            throw .invalidValue(key: "postgres.port", value: "\(port)", reason: "must be 1 to 65535")
        }
        guard !user.isEmpty else { throw .invalidValue(key: "postgres.user", value: user, reason: "must not be empty") }
        guard !database.isEmpty, database.utf8.count <= 63 else {
            throw .invalidValue(key: "postgres.database", value: database, reason: "1 to 63 bytes")
        }
        guard leaseSeconds >= 1, leaseSeconds <= 60 else {
            throw .invalidValue(key: "postgres.lease_seconds", value: "\(leaseSeconds)", reason: "must be 1 to 60")
        }
        if let node, node.isEmpty || node.utf8.count > 128 {
            throw .invalidValue(key: "postgres.node", value: node, reason: "1 to 128 bytes")
        }
        for (key, path) in [("postgres.password_file", passwordFile), ("postgres.ca_file", caFile)] {
            if let path, !FileManager.default.isReadableFile(atPath: path) {
                throw .invalidValue(key: key, value: path, reason: "cannot read it")
            }
        }
    }

    /// The password from `password_file` (its last line break dropped), or nil.
    package func password() throws(ConfigError) -> String? {
        guard let passwordFile else { return nil }
        guard let data = FileManager.default.contents(atPath: passwordFile) else {
            throw .invalidValue(key: "postgres.password_file", value: passwordFile, reason: "cannot read it")
        }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
    }

    mutating func resolvePaths(relativeTo file: String) {
        passwordFile = passwordFile.map { ConfigurationFile.resolve($0, relativeTo: file) }
        caFile = caFile.map { ConfigurationFile.resolve($0, relativeTo: file) }
    }
}
