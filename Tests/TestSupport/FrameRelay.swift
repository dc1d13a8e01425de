import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A TCP relay on 127.0.0.1 between ZeroMQ peers that understands ZMTP 3 framing, for network-fault
/// tests: it forwards the greeting and the security handshake untouched, then drops, duplicates,
/// reorders and delays whole data frames (CURVE `MESSAGE` commands, or plain data frames) at the rates
/// the test sets, from a seeded generator. What a peer sees is what a broken middlebox or a lossy
/// path would give it: under CURVE a duplicated or reordered frame fails the nonce check and libzmq
/// drops the connection and reconnects; a dropped one is simply lost.
package final class FrameRelay: @unchecked Sendable {
    // @unchecked: the listening socket and the threads are managed under `state`'s lock.
    package struct Faults: Sendable {
        package var drop: Double
        package var duplicate: Double
        package var reorder: Double
        /// Each data frame waits a uniform 0…this many milliseconds before it is forwarded.
        package var maxDelayMilliseconds: Int
        package init(drop: Double = 0, duplicate: Double = 0, reorder: Double = 0, maxDelayMilliseconds: Int = 0) {
            (self.drop, self.duplicate, self.reorder, self.maxDelayMilliseconds) = (drop, duplicate, reorder, maxDelayMilliseconds)
        }
    }

    package struct Counts: Sendable, Equatable {
        package var connections = 0
        package var frames = 0
        package var dropped = 0
        package var duplicated = 0
        package var reordered = 0
        package var delayed = 0
        package init() {}
    }

    package struct Failure: Error, CustomStringConvertible {
        package let description: String
    }

    /// The port the relay listens on.
    package let port: Int
    private let target: Int
    private let listener: Int32
    private let state: Mutex<(counts: Counts, faults: Faults, random: UInt64, sockets: [Int32], closed: Bool)>

    package init(to target: Int, faults: Faults, seed: UInt64 = 1) throws {
        self.target = target
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw Failure(description: "socket: \(errno)") }
        var yes: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 64) == 0 else {
            close(listener)
            throw Failure(description: "bind/listen: \(errno)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        self.listener = listener
        state = Mutex((Counts(), faults, seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed, [], false))
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "frame-relay-accept"
        thread.start()
    }

    deinit { stop() }

    package var counts: Counts { state.withLock { $0.counts } }

    /// Changes the fault rates for frames forwarded from now on.
    package func set(_ faults: Faults) { state.withLock { $0.faults = faults } }

    /// Stops accepting and closes every relayed connection.
    package func stop() {
        let sockets = state.withLock { state -> [Int32] in
            guard !state.closed else { return [] }
            state.closed = true
            return state.sockets + [listener]
        }
        for socket in sockets { shutdown(socket, Int32(SHUT_RDWR)); close(socket) }
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else {
                if errno == EINTR { continue }
                return
            }
            let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(port: target)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            let admitted = state.withLock { state -> Bool in
                guard !state.closed, connected == 0 else { return false }
                state.sockets += [client, server]
                state.counts.connections += 1
                return true
            }
            guard admitted else {
                close(client)
                close(server)
                continue
            }
            for (from, to) in [(client, server), (server, client)] {
                let thread = Thread { [self] in pump(from: from, to: to) }
                thread.name = "frame-relay-pump"
                thread.start()
            }
        }
    }

    /// Forwards one direction: the 64-byte greeting, then frame by frame.
    private func pump(from: Int32, to: Int32) {
        defer {
            shutdown(from, Int32(SHUT_RDWR))
            shutdown(to, Int32(SHUT_RDWR))
        }
        // The greeting goes through as it arrives: libzmq sends its first 10 bytes and waits for the peer's.
        var greeting = 0
        while greeting < 64 {
            var buffer = [UInt8](repeating: 0, count: 64 - greeting)
            let n = buffer.withUnsafeMutableBytes { Glibc.read(from, $0.baseAddress!, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0, write(to, Array(buffer[0..<n])) else { return }
            greeting += n
        }
        var held: [UInt8]?
        while let frame = readFrame(from) {
            guard Self.isData(frame) else {
                if let pending = held { guard write(to, pending) else { return }; held = nil }
                guard write(to, frame) else { return }
                continue
            }
            let (faults, draw) = state.withLock { state -> (Faults, [Double]) in
                state.counts.frames += 1
                return (state.faults, (0..<4).map { _ in Self.next(&state.random) })
            }
            if draw[0] < faults.drop {
                state.withLock { $0.counts.dropped += 1 }
                continue
            }
            if faults.maxDelayMilliseconds > 0 {
                let wait = Int(draw[3] * Double(faults.maxDelayMilliseconds))
                if wait > 0 {
                    state.withLock { $0.counts.delayed += 1 }
                    usleep(useconds_t(wait * 1000))
                }
            }
            if held == nil, draw[2] < faults.reorder {
                state.withLock { $0.counts.reordered += 1 }
                held = frame  // goes out after the next frame
                continue
            }
            guard write(to, frame) else { return }
            if let pending = held {
                guard write(to, pending) else { return }
                held = nil
            }
            if draw[1] < faults.duplicate {
                state.withLock { $0.counts.duplicated += 1 }
                guard write(to, frame) else { return }
            }
        }
    }

    /// Whether a ZMTP frame carries application data: a CURVE MESSAGE command or a plain data frame.
    private static func isData(_ frame: [UInt8]) -> Bool {
        let flags = frame[0]
        let header = flags & 0x02 != 0 ? 9 : 2
        guard flags & 0x04 != 0 else { return true }
        let name = Array("\u{07}MESSAGE".utf8)
        return frame.count >= header + name.count && Array(frame[header..<header + name.count]) == name
    }

    /// One whole frame, header included; nil at end of stream.
    private func readFrame(_ socket: Int32) -> [UInt8]? {
        guard let flags = read(socket, count: 1) else { return nil }
        let long = flags[0] & 0x02 != 0
        guard let sizeBytes = read(socket, count: long ? 8 : 1) else { return nil }
        let size = sizeBytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard size <= 512 << 20, let body = read(socket, count: Int(size)) else { return nil }
        return flags + sizeBytes + body
    }

    private func read(_ socket: Int32, count: Int) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(socket, $0.baseAddress! + offset, count - offset) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return nil }
            offset += n
        }
        return buffer
    }

    private func write(_ socket: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(socket, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    /// SplitMix64 → [0, 1).
    private static func next(_ state: inout UInt64) -> Double {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Double((z ^ (z >> 31)) >> 11) / Double(1 << 53)
    }
}
