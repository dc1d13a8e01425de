import Dispatch
import Foundation
import Synchronization

/// The ZAP handler of a context: admits CURVE clients whose public key is on an allow-list and
/// names each admitted connection with the enrolled id, which every message from it then carries
/// as ``ZMQMessage/userID``. One list for every socket of the context, or one per ZAP domain
/// (``ZMQSocketOptions/zapDomain``), so that each socket of a process admits only its own clients.
///
/// libzmq asks the handler bound at `inproc://zeromq.zap.01` about every CURVE handshake (RFC 27).
/// Without a handler, a CURVE server admits *any* client that knows the server key, so the
/// authenticator must be running before the server socket binds; the initializer returns only once
/// it is bound. It runs on its own thread with its own REP socket.
package final class ZAPAuthenticator: Sendable {
    /// One handshake decision, for logs and metrics.
    package struct Decision: Sendable, Equatable {
        package let clientKey: BoxPublicKey?
        /// The enrolled id, when admitted.
        package let userID: String?
        package let address: String
        /// The socket's ZAP domain ("" when it set none).
        package var domain: String = ""
        package var admitted: Bool { userID != nil }
    }

    static let endpoint = "inproc://zeromq.zap.01"
    /// State shared with the handler thread.
    private final class State: Sendable {
        /// Per ZAP domain; nil: one list for every domain.
        let allowLists: Mutex<[String?: [BoxPublicKey: String]]>
        let stop = Atomic<Bool>(false)
        let finished = DispatchSemaphore(value: 0)
        let admitted = Atomic<Int>(0)
        let refused = Atomic<Int>(0)
        init(_ allowLists: [String?: [BoxPublicKey: String]]) { self.allowLists = Mutex(allowLists) }
        /// A domain with its own list is asked only about it; the others about the shared one.
        func lookup(domain: String, key: BoxPublicKey) -> String? {
            allowLists.withLock { lists in (lists[domain] ?? lists[nil])?[key] }
        }
    }

    private let state: State
    /// Every decision, newest 1024 kept until read.
    package let decisions: AsyncStream<Decision>

    /// Binds the handler in `context` with the given allow-list (client public key → agent id), for
    /// every server socket of the context.
    package convenience init(context: ZMQContext, allowList: [BoxPublicKey: String]) throws(ZMQError) {
        try self.init(context: context, lists: [nil: allowList])
    }

    /// Binds the handler with one allow-list per ZAP domain: a CURVE server socket whose domain has
    /// no list admits nobody.
    package convenience init(context: ZMQContext, domains: [String: [BoxPublicKey: String]]) throws(ZMQError) {
        try self.init(context: context, lists: Dictionary(uniqueKeysWithValues: domains.map { ($0.key, $0.value) }))
    }

    private init(context: ZMQContext, lists: [String?: [BoxPublicKey: String]]) throws(ZMQError) {
        try ZMQContext.requireCurve()
        let state = State(lists)
        self.state = state
        let (decisions, continuation) = AsyncStream.makeStream(of: Decision.self, bufferingPolicy: .bufferingNewest(1024))
        self.decisions = decisions
        let ready = Mutex<ZMQError?>(nil)
        let bound = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer {
                continuation.finish()
                state.finished.signal()
            }
            Self.serve(context: context, state: state, continuation: continuation) { error in
                ready.withLock { $0 = error }
                bound.signal()
            }
        }
        thread.name = "zap-handler"
        thread.start()
        bound.wait()
        if let error = ready.withLock({ $0 }) {
            state.finished.wait()
            throw error
        }
    }

    deinit { close() }

    /// Admits `key` from now on, as `id` (in `domain`'s list; nil: the shared one).
    package func enroll(_ key: BoxPublicKey, as id: String, domain: String? = nil) {
        state.allowLists.withLock { $0[domain, default: [:]][key] = id }
    }
    /// Refuses `key` for new handshakes (existing connections stay up until they reconnect).
    package func revoke(_ key: BoxPublicKey, domain: String? = nil) {
        _ = state.allowLists.withLock { $0[domain]?.removeValue(forKey: key) }
    }

    package var admitted: Int { state.admitted.load(ordering: .relaxed) }
    package var refused: Int { state.refused.load(ordering: .relaxed) }

    /// Stops the handler thread. Idempotent.
    package func close() {
        if !state.stop.exchange(true, ordering: .acquiringAndReleasing) {
            state.finished.wait()
            state.finished.signal()
        }
    }

    private static func serve(context: ZMQContext, state: State, continuation: AsyncStream<Decision>.Continuation,
                              onBound: (ZMQError?) -> Void) {
        var options = ZMQSocketOptions()
        options.receiveTimeoutMilliseconds = 100
        var reportedBound = false
        do throws(ZMQError) {
            let socket = try ZMQSocket(.rep, in: context, options: options)
            try socket.bind(Self.endpoint)
            onBound(nil)
            reportedBound = true
            while !state.stop.load(ordering: .acquiring) {
                guard let request = try socket.receive() else { continue }
                let (reply, decision) = Self.answer(request.frames) { state.lookup(domain: $0, key: $1) }
                try socket.send(reply)
                guard let decision else { continue }
                if decision.admitted {
                    state.admitted.add(1, ordering: .relaxed)
                } else {
                    state.refused.add(1, ordering: .relaxed)
                }
                continuation.yield(decision)
            }
        } catch {
            // Setup failures are reported to the initializer; after that only context termination
            // (shutdown) ends the loop, since REP receive/send fail on nothing else.
            if !reportedBound { onBound(error) }
        }
    }

    /// Builds the ZAP reply for a request (RFC 27): version, request id, status code, status text,
    /// user id, metadata.
    static func answer(_ frames: [[UInt8]], lookup: (_ domain: String, _ key: BoxPublicKey) -> String?)
        -> ([[UInt8]], Decision?)
    {
        let requestID = frames.count > 1 ? frames[1] : []
        func reply(_ code: String, _ text: String, user: String = "") -> [[UInt8]] {
            [Array("1.0".utf8), requestID, Array(code.utf8), Array(text.utf8), Array(user.utf8), []]
        }
        // version, request id, domain, address, routing id, mechanism, credentials...
        guard frames.count >= 6, frames[0] == Array("1.0".utf8) else {
            return (reply("500", "malformed ZAP request"), nil)
        }
        let domain = String(decoding: frames[2], as: UTF8.self)
        let address = String(decoding: frames[3], as: UTF8.self)
        guard frames[5] == Array("CURVE".utf8), frames.count >= 7, let key = try? BoxPublicKey(bytes: frames[6]) else {
            return (reply("400", "CURVE required"), Decision(clientKey: nil, userID: nil, address: address, domain: domain))
        }
        guard let id = lookup(domain, key) else {
            return (reply("400", "client key not enrolled"),
                    Decision(clientKey: key, userID: nil, address: address, domain: domain))
        }
        return (reply("200", "OK", user: id), Decision(clientKey: key, userID: id, address: address, domain: domain))
    }
}
