package import Foundation

/// A real PostgreSQL server from Debian's `postgresql` package, made for one test in a scratch directory and
/// listening on 127.0.0.1 only, with password (SCRAM) authentication for the user `feddrift` and a database
/// `feddrift`. As root (CI), the server runs as the `postgres` system user, since PostgreSQL refuses root.
package final class PostgresServer: @unchecked Sendable {
    // @unchecked: the child process is started and stopped by the creating test only.
    package let port: Int
    package let directory: URL
    /// A file holding the password (0600), as `postgres.password_file` expects.
    package let passwordFile: URL
    package let user = "feddrift"
    package let database = "feddrift"
    private let server: ChildProcess
    private let binaries: URL

    /// Why a server could not be made: the package is missing, or a step failed (with its output).
    package struct Failure: Error, CustomStringConvertible {
        package let description: String
    }

    /// The newest installed server's `bin` directory (`/usr/lib/postgresql/<version>/bin`), or nil.
    package static var installedBinaries: URL? {
        let root = URL(fileURLWithPath: "/usr/lib/postgresql")
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return versions.compactMap(Int.init).sorted().last.map {
            root.appendingPathComponent("\($0)/bin")
        }.flatMap { FileManager.default.isExecutableFile(atPath: $0.appendingPathComponent("postgres").path) ? $0 : nil }
    }

    private static var isRoot: Bool { getuid() == 0 }

    /// Runs `tool` from the server's binaries, as `postgres` when root.
    private static func command(_ binaries: URL, _ tool: String, _ arguments: [String]) -> (URL, [String]) {
        let path = binaries.appendingPathComponent(tool).path
        if isRoot { return (URL(fileURLWithPath: "/usr/sbin/runuser"), ["-u", "postgres", "--", path] + arguments) }
        return (URL(fileURLWithPath: path), arguments)
    }

    /// Makes a cluster, starts it on `port` and creates the database; throws with the output when a step fails.
    package static func start(port: Int) async throws -> PostgresServer {
        guard let binaries = installedBinaries else {
            throw Failure(description: "PostgreSQL's server is not installed: apt-get install postgresql (scripts/test does)")
        }
        let directory = URL(fileURLWithPath: "/tmp/feddrift-pg-\(UUID().uuidString)")
        let data = directory.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let password = UUID().uuidString
        let passwordFile = directory.appendingPathComponent("password")
        try Data(password.utf8).write(to: passwordFile)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: passwordFile.path)
        if isRoot {
            // The server's user owns its directory and reads the password file for initdb.
            for path in [directory.path, passwordFile.path] {
                let chown = try ChildProcess(executable: URL(fileURLWithPath: "/bin/chown"), ["postgres:postgres", path],
                                             in: URL(fileURLWithPath: "/"))
                try await require(chown, seconds: 10, "chown")
            }
        }
        func run(_ tool: String, _ arguments: [String], _ environment: [String: String] = [:]) async throws {
            let (executable, full) = command(binaries, tool, arguments)
            let process = try ChildProcess(executable: executable, full, in: directory, environment: environment)
            guard await process.waitForExit(seconds: 120) == 0 else {
                throw Failure(description: "\(tool) failed: \(process.output)")
            }
        }
        try await run("initdb", ["-D", data.path, "-U", "feddrift", "--pwfile", passwordFile.path,
                                 "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"])
        let (executable, arguments) = command(binaries, "postgres", [
            "-D", data.path, "-h", "127.0.0.1", "-p", "\(port)", "-k", directory.path,
            "-c", "fsync=off", "-c", "max_connections=40", "-c", "log_min_messages=warning",
        ])
        let server = try ChildProcess(executable: executable, arguments, in: directory)
        let made = PostgresServer(port: port, directory: directory, passwordFile: passwordFile, server: server,
                                  binaries: binaries)
        // Ready when it accepts a query; then the database the aggregators use.
        let deadline = Date().addingTimeInterval(60)
        while true {
            do {
                try await made.psql("SELECT 1", database: "postgres")
                break
            } catch {
                guard Date() < deadline, server.process.isRunning else {
                    made.stop()
                    throw Failure(description: "PostgreSQL did not start: \(server.output) \(error)")
                }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        try await made.psql("CREATE DATABASE feddrift", database: "postgres")
        return made
    }

    private init(port: Int, directory: URL, passwordFile: URL, server: ChildProcess, binaries: URL) {
        self.port = port
        self.directory = directory
        self.passwordFile = passwordFile
        self.server = server
        self.binaries = binaries
    }

    deinit { stop() }

    /// Runs `sql` with psql over TCP as `feddrift`; returns its unaligned, tuples-only output.
    @discardableResult
    package func psql(_ sql: String, database: String? = nil) async throws -> String {
        let password = try String(contentsOf: passwordFile, encoding: .utf8)
        let process = try ChildProcess(
            executable: binaries.appendingPathComponent("psql"),
            ["-h", "127.0.0.1", "-p", "\(port)", "-U", user, "-d", database ?? self.database, "-v", "ON_ERROR_STOP=1",
             "-At", "-c", sql],
            in: directory, environment: ["PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"])
        guard await process.waitForExit(seconds: 30) == 0 else { throw Failure(description: "psql: \(process.output)") }
        return process.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The YAML of an aggregator's `postgres` section for this server.
    package func configuration(node: String, leaseSeconds: Double = 3) -> String {
        "postgres: {host: 127.0.0.1, port: \(port), user: \(user), database: \(database), "
            + "password_file: \(passwordFile.path), lease_seconds: \(leaseSeconds), node: \(node)}\n"
    }

    /// Stops the server at once and removes its directory.
    package func stop() {
        if server.process.isRunning {
            // pg_ctl signals the postmaster itself (as root, `runuser` sits between it and this process).
            let (executable, arguments) = Self.command(binaries, "pg_ctl", [
                "stop", "-D", directory.appendingPathComponent("data").path, "-m", "immediate", "-w"])
            let stop = Process()
            stop.executableURL = executable
            stop.arguments = arguments
            stop.standardOutput = FileHandle.nullDevice
            stop.standardError = FileHandle.nullDevice
            if (try? stop.run()) != nil { stop.waitUntilExit() }
            if server.process.isRunning { kill(server.process.processIdentifier, SIGKILL) }
            server.process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }
}
