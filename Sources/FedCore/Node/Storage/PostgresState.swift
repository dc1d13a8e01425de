package import FedIO
package import FedLogic
import FedModel
import Foundation
package import Logging
import NIOCore
import NIOPosix
import NIOSSL
internal import PostgresNIO
import Synchronization

/// Why the PostgreSQL state could not be used, or why this process may no longer lead.
package enum PostgresStateError: Error, CustomStringConvertible, Sendable {
    /// A statement or the connection failed.
    case database(operation: String, reason: String)
    /// Another aggregator holds the lease now (it took over after this one's lease ran out or its session
    /// ended): this process must stop serving; nothing it writes is accepted any more.
    case leadershipLost(holder: String, token: Int64)
    /// The state holds something this process must not overwrite (an older round, a round committed twice).
    case conflict(String)

    package var description: String {
        switch self {
        case let .database(operation, reason): "PostgreSQL: \(operation) failed: \(reason)"
        case let .leadershipLost(holder, token):
            "leadership lost: \(holder.isEmpty ? "nobody" : holder) holds the lease now (token \(token)); this "
                + "aggregator stops, and a restart makes it the standby"
        case let .conflict(why): "PostgreSQL state: \(why)"
        }
    }
}

/// Who holds the lease, as a standby sees it.
package struct LeaseHolder: Sendable, Equatable {
    package var holder: String
    package var token: Int64
    /// The lease ran out or the holder's session is gone: the next attempt takes it.
    package var vacant: Bool
}

/// The aggregator's state in PostgreSQL, shared by a highly available pair (docs/OPERATIONS.md).
///
/// **The lease.** One row (`feddrift_leader`) names the leader, its fencing token and when its lease ends.
/// Taking it is one `UPDATE … WHERE` the lease ran out *or* the holder's database session is gone (a crashed
/// leader's connection closes at once, so a standby need not wait for the lease to run out), and it
/// increments the token. The leader renews it every third of `lease_seconds`; a renewal that finds another
/// token means another process took over, and this one stops.
///
/// **Fencing.** Every checkpoint is written in one transaction that first locks the lease row and checks
/// that it still carries this process's token: a leader that was paused (or cut off) while another took
/// over cannot write, whatever it believes. The round log's primary key refuses a second commit of the same
/// round, and a checkpoint never goes back to an older round.
///
/// Two connections: the *lease* session (its backend pid is what standbys watch) and the *data* session for
/// transactions, so that a renewal is never part of a checkpoint's transaction.
package final class PostgresStateStore: Sendable {
    package let configuration: PostgresConfiguration
    package let node: String
    private let lease: PostgresConnection
    private let data: PostgresConnection
    private let logger: Logger
    /// This process's fencing token once it leads.
    private let token = Mutex<Int64?>(nil)

    package var location: String { configuration.location }

    private init(configuration: PostgresConfiguration, lease: PostgresConnection, data: PostgresConnection, logger: Logger) {
        self.configuration = configuration
        node = configuration.nodeName
        self.lease = lease
        self.data = data
        self.logger = logger
    }

    /// Connects both sessions and brings the schema up to date (under an advisory lock, so two processes
    /// starting together do not both create it).
    package static func connect(_ configuration: PostgresConfiguration, logger: Logger)
        async throws(PostgresStateError) -> PostgresStateStore
    {
        let settings: PostgresConnection.Configuration
        do {
            let tls: PostgresConnection.Configuration.TLS
            if configuration.usesTLS {
                var client = TLSConfiguration.makeClientConfiguration()
                if let ca = configuration.caFile { client.trustRoots = .file(ca) }
                tls = .require(try NIOSSLContext(configuration: client))
            } else {
                tls = .disable
            }
            settings = PostgresConnection.Configuration(
                host: configuration.host, port: configuration.port, username: configuration.user,
                password: try configuration.password(), database: configuration.database, tls: tls)
        } catch {
            throw .database(operation: "configure the connection to \(configuration.location)", reason: "\(error)")
        }
        // postgres-nio logs each query at debug; only its warnings reach the aggregator's log.
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .warning)
        func open(_ id: Int) async throws(PostgresStateError) -> PostgresConnection {
            do {
                return try await PostgresConnection.connect(on: MultiThreadedEventLoopGroup.singleton.any(),
                                                            configuration: settings, id: id, logger: quiet).get()
            } catch {
                throw .database(operation: "connect to \(configuration.location)", reason: Self.describe(error))
            }
        }
        let lease = try await open(1)
        let data: PostgresConnection
        do {
            data = try await open(2)
        } catch {
            try? await lease.close().get()
            throw error
        }
        let store = PostgresStateStore(configuration: configuration, lease: lease, data: data, logger: quiet)
        do {
            try await store.migrate()
        } catch {
            await store.close()
            throw error
        }
        return store
    }

    package func close() async {
        try? await lease.close().get()
        try? await data.close().get()
    }

    /// A PostgreSQL error's server message (postgres-nio's description hides it by design).
    private static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] { return message }
            return "\(error.code)"
        }
        if let error = error as? PostgresTransactionError {
            for inner in [error.closureError, error.commitError, error.beginError].compactMap({ $0 }) {
                return describe(inner)
            }
        }
        return "\(error)"
    }

    private func run(_ operation: String, on connection: PostgresConnection, _ query: PostgresQuery)
        async throws(PostgresStateError)
    {
        do {
            try await connection.query(query, logger: logger)
        } catch {
            throw .database(operation: operation, reason: Self.describe(error))
        }
    }

    // MARK: Schema

    private static let schemaVersion = 1

    private func migrate() async throws(PostgresStateError) {
        do {
            try await data.withTransaction(logger: logger) { db in
                // One process at a time creates the schema; the lock ends with the transaction.
                try await db.query("SELECT pg_advisory_xact_lock(7311042016)", logger: logger)
                try await db.query("CREATE TABLE IF NOT EXISTS feddrift_schema (version integer NOT NULL)", logger: logger)
                var version = 0
                for try await (v) in try await db.query("SELECT max(version) FROM feddrift_schema", logger: logger)
                    .decode(Int?.self) { version = v ?? 0 }
                guard version < Self.schemaVersion else {
                    if version > Self.schemaVersion {
                        throw PostgresStateError.conflict("""
                            the database's schema is version \(version), newer than this aggregator's \
                            (\(Self.schemaVersion)): run the newer aggregator, or point postgres.database elsewhere
                            """)
                    }
                    return
                }
                try await db.query("""
                    CREATE TABLE feddrift_leader (
                        id integer PRIMARY KEY CHECK (id = 1), holder text NOT NULL, token bigint NOT NULL,
                        backend_pid integer NOT NULL, expires_at timestamptz NOT NULL, acquired_at timestamptz)
                    """, logger: logger)
                try await db.query("INSERT INTO feddrift_leader VALUES (1, '', 0, 0, '-infinity', NULL)", logger: logger)
                try await db.query("""
                    CREATE TABLE feddrift_checkpoint (
                        id integer PRIMARY KEY CHECK (id = 1), round bigint NOT NULL, model_version bigint NOT NULL,
                        model bytea NOT NULL, optimizer_state bytea NOT NULL, clip_norm double precision,
                        interest_shift_threshold double precision, churn_threshold double precision,
                        token bigint NOT NULL, holder text NOT NULL, saved_at timestamptz NOT NULL)
                    """, logger: logger)
                try await db.query("""
                    CREATE TABLE feddrift_agent (
                        id text PRIMARY KEY, last_round bigint NOT NULL, accepted bigint NOT NULL,
                        rejected bigint NOT NULL, ledger_sequence bigint NOT NULL, ledger_head text NOT NULL)
                    """, logger: logger)
                try await db.query("""
                    CREATE TABLE feddrift_enrolment (id text PRIMARY KEY, public_identity text NOT NULL)
                    """, logger: logger)
                try await db.query("""
                    CREATE TABLE feddrift_round_log (
                        round bigint PRIMARY KEY, model_version bigint NOT NULL, token bigint NOT NULL,
                        holder text NOT NULL, committed_at timestamptz NOT NULL)
                    """, logger: logger)
                try await db.query("INSERT INTO feddrift_schema VALUES (\(Self.schemaVersion))", logger: logger)
            }
        } catch let error as PostgresTransactionError {
            if let inner = error.closureError as? PostgresStateError { throw inner }
            throw .database(operation: "create the schema in \(location)", reason: Self.describe(error))
        } catch {
            throw .database(operation: "create the schema in \(location)", reason: Self.describe(error))
        }
    }

    // MARK: The lease

    /// Who holds the lease now.
    package func holder() async throws(PostgresStateError) -> LeaseHolder {
        do {
            let rows = try await lease.query("""
                SELECT l.holder, l.token, l.expires_at < clock_timestamp()
                    OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.backend_pid)
                FROM feddrift_leader l WHERE l.id = 1
                """, logger: logger)
            for try await (holder, token, vacant) in rows.decode((String, Int64, Bool).self) {
                return LeaseHolder(holder: holder, token: token, vacant: vacant)
            }
        } catch {
            throw .database(operation: "read the lease", reason: Self.describe(error))
        }
        throw .conflict("the lease row is missing from feddrift_leader")
    }

    /// Takes the lease if it is vacant; returns the new fencing token, or nil when another process holds it.
    package func tryAcquire() async throws(PostgresStateError) -> Int64? {
        let seconds = configuration.leaseSeconds
        do {
            let rows = try await lease.query("""
                UPDATE feddrift_leader l SET holder = \(node), token = l.token + 1, backend_pid = pg_backend_pid(),
                    expires_at = clock_timestamp() + make_interval(secs => \(seconds)), acquired_at = clock_timestamp()
                WHERE l.id = 1 AND (l.expires_at < clock_timestamp()
                    OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.backend_pid))
                RETURNING l.token
                """, logger: logger)
            for try await (acquired) in rows.decode(Int64.self) {
                token.withLock { $0 = acquired }
                return acquired
            }
            return nil
        } catch {
            throw .database(operation: "take the lease", reason: Self.describe(error))
        }
    }

    /// Waits until this process holds the lease (polling every `poll`), calling `waiting` whenever the holder
    /// it waits for changes; returns the fencing token. Cancellation ends the wait.
    package func acquire(poll: Duration = .milliseconds(250), waiting: (LeaseHolder) -> Void)
        async throws -> Int64
    {
        var last: LeaseHolder?
        while true {
            if let token = try await tryAcquire() { return token }
            let now = try await holder()
            if now.holder != last?.holder || now.token != last?.token { waiting(now) }
            last = now
            try await Task.sleep(for: poll)
        }
    }

    /// Extends the lease by `lease_seconds`; throws ``PostgresStateError/leadershipLost(holder:token:)`` when
    /// another process took it.
    package func renew() async throws(PostgresStateError) {
        guard let mine = token.withLock({ $0 }) else { throw .leadershipLost(holder: "", token: 0) }
        let seconds = configuration.leaseSeconds
        var renewed = false
        do {
            let rows = try await lease.query("""
                UPDATE feddrift_leader SET expires_at = clock_timestamp() + make_interval(secs => \(seconds))
                WHERE id = 1 AND token = \(mine) RETURNING token
                """, logger: logger)
            for try await _ in rows.decode(Int64.self) { renewed = true }
        } catch {
            throw .database(operation: "renew the lease", reason: Self.describe(error))
        }
        guard renewed else {
            let now = try await holder()
            throw .leadershipLost(holder: now.holder, token: now.token)
        }
    }

    /// ``renew()``, given up after `deadline`: a leader that cannot reach the database (cut off, or the server
    /// hangs) must stop before its lease runs out, so its sessions are closed, which fails the hanging query.
    package func renew(within deadline: Duration) async throws {
        let outcome = await withTaskGroup(of: Result<Bool, PostgresStateError>.self) { group in
            group.addTask { [self] () async -> Result<Bool, PostgresStateError> in
                do throws(PostgresStateError) { try await renew(); return .success(true) } catch { return .failure(error) }
            }
            group.addTask {
                try? await Task.sleep(for: deadline)
                return .success(false)
            }
            let first = await group.next() ?? .success(false)
            if case .success(false) = first { await close() }
            group.cancelAll()
            return first
        }
        switch outcome {
        case .success(true): return
        case .success(false):
            throw PostgresStateError.database(operation: "renew the lease",
                                              reason: "no answer within \(deadline.components.seconds) s")
        case .failure(let error): throw error
        }
    }

    /// Gives the lease up at once (a graceful stop), so the standby need not wait for it to run out.
    package func release() async {
        guard let mine = token.withLock({ $0 }) else { return }
        try? await run("release the lease", on: lease, """
            UPDATE feddrift_leader SET expires_at = '-infinity' WHERE id = 1 AND token = \(mine)
            """)
    }

    /// This process's fencing token (nil before it leads).
    package var fencingToken: Int64? { token.withLock { $0 } }

    // MARK: Enrolment

    /// Records the enrolment this leader serves; returns the agents added and removed, and those whose key
    /// changed, since the previous leader's.
    package func recordEnrolment(_ agents: [String: NodePublicIdentity])
        async throws(PostgresStateError) -> (added: [String], removed: [String], changed: [String])
    {
        let mine = try requireToken()
        do {
            return try await data.withTransaction(logger: logger) { db in
                try await self.checkFence(db, token: mine)
                var previous: [String: String] = [:]
                for try await (id, identity) in try await db.query("SELECT id, public_identity FROM feddrift_enrolment",
                                                                   logger: logger).decode((String, String).self) {
                    previous[id] = identity
                }
                let current = agents.mapValues(\.description)
                try await db.query("DELETE FROM feddrift_enrolment", logger: logger)
                let ids = current.keys.sorted()
                let identities = ids.map { current[$0] ?? "" }
                try await db.query("""
                    INSERT INTO feddrift_enrolment SELECT * FROM unnest(\(ids)::text[], \(identities)::text[])
                    """, logger: logger)
                let added = ids.filter { previous[$0] == nil }
                let removed = previous.keys.filter { current[$0] == nil }.sorted()
                let changed = ids.filter { previous[$0] != nil && previous[$0] != current[$0] }
                return (previous.isEmpty ? [] : added, removed, changed)
            }
        } catch {
            throw Self.mapped(error, operation: "record the enrolment")
        }
    }

    // MARK: Checkpoint

    /// The last committed checkpoint, or nil for a new federation.
    package func load() async throws(PostgresStateError) -> AggregatorCheckpoint? {
        do {
            var found: (round: Int64, model: ByteBuffer, optimizer: ByteBuffer, clip: Double?, shift: Double?,
                        churn: Double?)?
            let rows = try await data.query("""
                SELECT round, model, optimizer_state, clip_norm, interest_shift_threshold, churn_threshold
                FROM feddrift_checkpoint WHERE id = 1
                """, logger: logger)
            for try await row in rows.decode((Int64, ByteBuffer, ByteBuffer, Double?, Double?, Double?).self) {
                found = row
            }
            guard let found else { return nil }
            var agents: [String: AggregatorCheckpoint.AgentRecord] = [:]
            let agentRows = try await data.query("""
                SELECT id, last_round, accepted, rejected, ledger_sequence, ledger_head FROM feddrift_agent
                """, logger: logger)
            for try await (id, last, accepted, rejected, sequence, head)
                in agentRows.decode((String, Int64, Int64, Int64, Int64, String).self) {
                agents[id] = .init(lastRound: UInt64(bitPattern: last), acceptedUpdates: Int(accepted),
                                   rejectedUpdates: Int(rejected), ledgerSequence: sequence, ledgerHead: head)
            }
            let model: (parameters: LSTMParameters<Float>, modelVersion: UInt64)
            do {
                model = try ModelFile.decode(Array(buffer: found.model), path: "\(location)#feddrift_checkpoint.model")
            } catch {
                throw PostgresStateError.conflict("the checkpoint's model does not decode: \(error)")
            }
            var thresholds: AlertThresholds?
            if let shift = found.shift, let churn = found.churn {
                thresholds = AlertThresholds(interestShift: shift, churnRisk: churn)
            }
            return AggregatorCheckpoint(round: UInt64(bitPattern: found.round), modelVersion: model.modelVersion,
                                        parameters: model.parameters, optimizerState: Data(Array(buffer: found.optimizer)).doubles,
                                        agents: agents, clipNorm: found.clip, thresholds: thresholds)
        } catch let error as PostgresStateError {
            throw error
        } catch {
            throw .database(operation: "load the checkpoint", reason: Self.describe(error))
        }
    }

    /// Replaces the checkpoint in one transaction fenced by this process's token: the lease row is locked and
    /// must still carry the token; the round must be newer than the stored one, and the round log takes it
    /// once.
    package func save(_ checkpoint: AggregatorCheckpoint, encodedModel: [UInt8]) async throws(PostgresStateError) {
        let mine = try requireToken()
        let round = Int64(bitPattern: checkpoint.round), version = Int64(bitPattern: checkpoint.modelVersion)
        let model = ByteBuffer(bytes: encodedModel)
        var optimizer = ByteBuffer()
        optimizer.reserveCapacity(checkpoint.optimizerState.count * 8)
        for value in checkpoint.optimizerState { optimizer.writeInteger(value.bitPattern, endianness: .little) }
        let ids = checkpoint.agents.keys.sorted()
        let records = ids.map { checkpoint.agents[$0] ?? .init() }
        let lastRounds = records.map { Int64(bitPattern: $0.lastRound) }
        let accepted = records.map { Int64($0.acceptedUpdates) }, rejected = records.map { Int64($0.rejectedUpdates) }
        let sequences = records.map(\.ledgerSequence), heads = records.map(\.ledgerHead)
        let clip = checkpoint.clipNorm, shift = checkpoint.thresholds?.interestShift
        let churn = checkpoint.thresholds?.churnRisk
        let node = node
        do {
            try await data.withTransaction(logger: logger) { db in
                try await self.checkFence(db, token: mine)
                var stored: Int64?
                for try await (r) in try await db.query("SELECT round FROM feddrift_checkpoint WHERE id = 1 FOR UPDATE",
                                                        logger: logger).decode(Int64.self) { stored = r }
                if let stored, stored > round || (stored == round && round > 0) {
                    throw PostgresStateError.conflict("""
                        round \(round) would replace the checkpoint of round \(stored): a checkpoint never goes back \
                        and a round is committed once
                        """)
                }
                try await db.query("""
                    INSERT INTO feddrift_checkpoint (id, round, model_version, model, optimizer_state, clip_norm,
                        interest_shift_threshold, churn_threshold, token, holder, saved_at)
                    VALUES (1, \(round), \(version), \(model), \(optimizer), \(clip), \(shift), \(churn), \(mine),
                        \(node), clock_timestamp())
                    ON CONFLICT (id) DO UPDATE SET round = excluded.round, model_version = excluded.model_version,
                        model = excluded.model, optimizer_state = excluded.optimizer_state,
                        clip_norm = excluded.clip_norm, interest_shift_threshold = excluded.interest_shift_threshold,
                        churn_threshold = excluded.churn_threshold, token = excluded.token, holder = excluded.holder,
                        saved_at = excluded.saved_at
                    """, logger: logger)
                try await db.query("DELETE FROM feddrift_agent", logger: logger)
                try await db.query("""
                    INSERT INTO feddrift_agent (id, last_round, accepted, rejected, ledger_sequence, ledger_head)
                    SELECT * FROM unnest(\(ids)::text[], \(lastRounds)::bigint[], \(accepted)::bigint[],
                        \(rejected)::bigint[], \(sequences)::bigint[], \(heads)::text[])
                    """, logger: logger)
                if round > 0 {
                    try await db.query("""
                        INSERT INTO feddrift_round_log VALUES (\(round), \(version), \(mine), \(node), clock_timestamp())
                        """, logger: logger)
                }
                Failpoint.aggregatorCheckpointWrite.reach()
            }
        } catch {
            throw Self.mapped(error, operation: "save the checkpoint of round \(round)")
        }
    }

    /// The committed rounds, oldest first: round, model version, fencing token and holder (status, tests).
    package func roundLog() async throws(PostgresStateError) -> [(round: UInt64, modelVersion: UInt64, token: Int64, holder: String)] {
        do {
            var log: [(UInt64, UInt64, Int64, String)] = []
            let rows = try await data.query("""
                SELECT round, model_version, token, holder FROM feddrift_round_log ORDER BY round
                """, logger: logger)
            for try await (round, version, token, holder) in rows.decode((Int64, Int64, Int64, String).self) {
                log.append((UInt64(bitPattern: round), UInt64(bitPattern: version), token, holder))
            }
            return log
        } catch {
            throw .database(operation: "read the round log", reason: Self.describe(error))
        }
    }

    private func requireToken() throws(PostgresStateError) -> Int64 {
        guard let mine = token.withLock({ $0 }) else { throw .leadershipLost(holder: "", token: 0) }
        return mine
    }

    /// Inside a transaction: locks the lease row and checks that it carries `token`.
    private func checkFence(_ db: PostgresConnection, token mine: Int64) async throws {
        var current: (String, Int64)?
        for try await row in try await db.query("SELECT holder, token FROM feddrift_leader WHERE id = 1 FOR UPDATE",
                                                logger: logger).decode((String, Int64).self) { current = row }
        guard let current, current.1 == mine else {
            throw PostgresStateError.leadershipLost(holder: current?.0 ?? "", token: current?.1 ?? 0)
        }
    }

    private static func mapped(_ error: any Error, operation: String) -> PostgresStateError {
        if let error = error as? PostgresStateError { return error }
        if let error = error as? PostgresTransactionError, let inner = error.closureError as? PostgresStateError {
            return inner
        }
        if let error = error as? PostgresTransactionError, let inner = error.closureError as? PSQLError,
           inner.serverInfo?[.sqlState] == "23505" {
            return .conflict("\(operation): the round log already holds this round (\(describe(inner)))")
        }
        return .database(operation: operation, reason: describe(error))
    }
}
