import FedIO
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// Why an e-mail was not handed to the SMTP server.
package enum SMTPError: Error, CustomStringConvertible, Sendable {
    case connect(String)
    /// The server answered `reply` to `command` (a 4xx or 5xx, or a code the dialogue does not expect).
    case rejected(command: String, reply: String)
    /// `starttls: required`, and the server does not offer STARTTLS.
    case tlsNotOffered
    case tls(String)
    case timedOut(seconds: Double)
    case closed
    case credentials(String)

    /// The server refused the message itself (a 5xx after DATA): retrying will not change it.
    package var isPermanent: Bool {
        if case let .rejected(command, reply) = self { return command == "the message" && reply.hasPrefix("5") }
        return false
    }

    package var description: String {
        switch self {
        case let .connect(why): "cannot connect: \(why)"
        case let .rejected(command, reply): "the server answered \(command) with '\(reply)'"
        case .tlsNotOffered: "the server does not offer STARTTLS, and starttls is required"
        case let .tls(why): "TLS failed: \(why)"
        case let .timedOut(seconds): "no answer within \(seconds) s"
        case .closed: "the server closed the connection"
        case let .credentials(why): why
        }
    }
}

/// The SMTP password, read from its file at start and wiped when the sink is released.
package final class SMTPCredentials: Sendable {
    package let username: String
    private let password: Mutex<[UInt8]>

    package init(username: String, passwordFile: String) throws(SMTPError) {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: passwordFile),
              var bytes = FileManager.default.contents(atPath: passwordFile).map(Array.init) else {
            throw .credentials("cannot read password_file \(passwordFile)")
        }
        if let mode = attributes[.posixPermissions] as? Int, mode & 0o077 != 0 {
            Sodium.wipe(&bytes)
            throw .credentials("password_file \(passwordFile) is readable by others (mode \(String(mode, radix: 8))): chmod 600 it")
        }
        while let last = bytes.last, last == 10 || last == 13 { bytes.removeLast() }
        guard !bytes.isEmpty else { throw .credentials("password_file \(passwordFile) is empty") }
        self.username = username
        password = Mutex(bytes)
        Sodium.wipe(&bytes)
    }

    deinit { password.withLock { Sodium.wipe(&$0) } }

    /// `AUTH PLAIN`'s initial response (RFC 4616): base64 of NUL user NUL password.
    fileprivate func plainResponse() -> String {
        password.withLock { password in
            var message = [0] + Array(username.utf8) + [0] + password
            defer { Sodium.wipe(&message) }
            return Data(message).base64EncodedString()
        }
    }
}

/// An SMTP submission client (RFC 5321) on SwiftNIO: EHLO, STARTTLS (RFC 3207) with certificate and
/// host verification, AUTH PLAIN, one message to its recipients, QUIT. One connection per message
/// batch; the whole dialogue is bounded by `timeout`.
package struct SMTPClient: Sendable {
    package var host: String
    package var port: Int
    package var starttls: AlertSinkConfiguration.Email.StartTLS
    package var credentials: SMTPCredentials?
    package var caFile: String?
    package var timeout: Double
    /// Built once (it reads and parses the trust store: not on every message, nor on the cooperative pool
    /// more than at start).
    private let tls: NIOSSLContext?

    package init(host: String, port: Int, starttls: AlertSinkConfiguration.Email.StartTLS,
                 credentials: SMTPCredentials?, caFile: String?, timeout: Double) throws(SMTPError) {
        (self.host, self.port, self.starttls, self.credentials, self.caFile, self.timeout)
            = (host, port, starttls, credentials, caFile, timeout)
        do {
            var configuration = TLSConfiguration.makeClientConfiguration()
            if let caFile { configuration.trustRoots = .file(caFile) }
            tls = starttls == .never ? nil : try NIOSSLContext(configuration: configuration)
        } catch {
            throw .tls("cannot set up TLS (ca_file \(caFile ?? "system")): \(error)")
        }
    }

    /// Sends `message` (RFC 5322 text, lines ending in CRLF) from `from` to `recipients`.
    package func send(from: String, to recipients: [String], message: String) async throws(SMTPError) {
        let received = Counter(), accepted = Counter(), failure = FirstError()
        let channel: NIOAsyncChannel<String, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.milliseconds(Int64(timeout * 1_000)))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(SMTPLineDecoder()))
                        try channel.pipeline.syncOperations.addHandler(LineCounter(count: received, failure: failure))
                        return try NIOAsyncChannel<String, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw .connect("\(host):\(port): \(error)")
        }
        let dialogue = Dialogue(client: self, from: from, recipients: recipients, message: message, tls: tls,
                                received: received, accepted: accepted)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await channel.executeThenClose { inbound, outbound in
                        try await dialogue.run(channel: channel.channel, inbound: inbound, outbound: outbound)
                    }
                }
                group.addTask {
                    try await Task.sleep(for: .seconds(timeout))
                    channel.channel.close(promise: nil)
                    throw SMTPError.timedOut(seconds: timeout)
                }
                defer { group.cancelAll() }
                try await group.next()
            }
        } catch {
            // The server took the message (250 after DATA) and then did not close the dialogue well (no
            // answer to QUIT in time): that is a delivery; sending it again would duplicate it.
            if accepted.value > 0 { return }
            if let error = error as? SMTPError, case .tls = error { throw error }
            // A failed handshake closes the channel: the dialogue then sees "I/O on closed channel" while
            // the pipeline saw why — say that.
            if let cause = failure.value, String(describing: cause).contains("SSL") || cause is NIOSSLError {
                throw .tls("\(cause)")
            }
            if let error = error as? SMTPError { throw error }
            throw .connect("\(host):\(port): \(error)")
        }
    }

    /// A count shared between the event loop and the dialogue.
    final class Counter: Sendable {
        private let count = Atomic<Int>(0)
        var value: Int { count.load(ordering: .acquiring) }
        func increment() { count.add(1, ordering: .releasing) }
    }

    /// The first error the pipeline saw (a TLS handshake's), shared with the dialogue.
    final class FirstError: Sendable {
        private let error = Mutex<(any Error)?>(nil)
        var value: (any Error)? { error.withLock { $0 } }
        func record(_ new: any Error) { error.withLock { if $0 == nil { $0 = new } } }
    }

    /// Counts the reply lines decoded, so that the dialogue can tell whether any arrived it has not read,
    /// and keeps the first error the pipeline saw.
    final class LineCounter: ChannelInboundHandler, Sendable {
        typealias InboundIn = String
        typealias InboundOut = String
        let count: Counter
        let failure: FirstError
        init(count: Counter, failure: FirstError) { (self.count, self.failure) = (count, failure) }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            count.increment()
            context.fireChannelRead(data)
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            failure.record(error)
            context.fireErrorCaught(error)
        }
    }

    /// One SMTP conversation over a connected channel.
    private struct Dialogue: Sendable {
        let client: SMTPClient
        let from: String
        let recipients: [String]
        let message: String
        let tls: NIOSSLContext?
        let received: Counter
        let accepted: Counter

        func run(channel: any Channel, inbound: NIOAsyncChannelInboundStream<String>,
                 outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws {
            var lines = inbound.makeAsyncIterator()
            var read = 0
            func reply() async throws -> (code: Int, lines: [String]) {
                var text: [String] = []
                while true {
                    guard let line = try await lines.next() else { throw SMTPError.closed }
                    read += 1
                    text.append(line)
                    let bytes = Array(line.utf8)
                    guard bytes.count >= 3, let code = Int(String(decoding: bytes[0..<3], as: UTF8.self)) else {
                        throw SMTPError.rejected(command: "(reading a reply)", reply: line)
                    }
                    if bytes.count == 3 || bytes[3] != UInt8(ascii: "-") { return (code, text) }
                }
            }
            func command(_ text: String, shown: String? = nil, expect: Set<Int>) async throws -> [String] {
                try await outbound.write(ByteBuffer(string: text + "\r\n"))
                let answer = try await reply()
                guard expect.contains(answer.code) else {
                    throw SMTPError.rejected(command: shown ?? text, reply: answer.lines.joined(separator: " | "))
                }
                return answer.lines
            }
            let greeting = try await reply()
            guard greeting.code == 220 else {
                throw SMTPError.rejected(command: "(greeting)", reply: greeting.lines.joined(separator: " | "))
            }
            var extensions = try await command("EHLO feddrift-agent", expect: [250])
            var secured = false
            let offersTLS = extensions.contains { $0.dropFirst(4).uppercased().hasPrefix("STARTTLS") }
            if let tls, offersTLS {
                _ = try await command("STARTTLS", expect: [220])
                let host = client.host
                let serverName: String? = host.contains(":") || host.allSatisfy({ $0.isNumber || $0 == "." }) ? nil : host
                let readBeforeTLS = read, received = self.received
                try await channel.eventLoop.submit {
                    // RFC 3207: nothing may come between the 220 and the handshake. A line that did was
                    // sent in clear by someone in the path, to be read as a reply inside TLS: refuse.
                    guard received.value == readBeforeTLS else {
                        throw SMTPError.tls("the server sent data after its 220 to STARTTLS, before TLS (refused: RFC 3207)")
                    }
                    let handler = try NIOSSLClientHandler(context: tls, serverHostname: serverName)
                    try channel.pipeline.syncOperations.addHandler(handler, position: .first)
                }.get()
                secured = true
                extensions = try await command("EHLO feddrift-agent", expect: [250])
            } else if client.starttls == .required {
                _ = try? await command("QUIT", expect: [221])
                throw SMTPError.tlsNotOffered
            }
            if let credentials = client.credentials {
                guard secured || AlertSinkConfiguration.isLoopback(client.host) else {
                    throw SMTPError.credentials("refusing to send the password without TLS to \(client.host)")
                }
                _ = try await command("AUTH PLAIN \(credentials.plainResponse())", shown: "AUTH PLAIN (credentials)",
                                      expect: [235])
            }
            _ = try await command("MAIL FROM:<\(from)>", expect: [250])
            for recipient in recipients { _ = try await command("RCPT TO:<\(recipient)>", expect: [250, 251]) }
            _ = try await command("DATA", expect: [354])
            _ = try await command(Self.dotStuffed(message) + ".", shown: "the message", expect: [250])
            accepted.increment()
            _ = try? await command("QUIT", expect: [221])
        }

        /// The message as DATA carries it: CRLF line ends, a leading dot doubled (RFC 5321 §4.5.2),
        /// ending in CRLF.
        static func dotStuffed(_ message: String) -> String {
            var out = ""
            for line in message.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false) {
                out += (line.hasPrefix(".") ? "." : "") + line + "\r\n"
            }
            return out
        }
    }
}

/// Splits the server's replies into lines (CR LF or LF); a line longer than 8 KiB is an error.
private struct SMTPLineDecoder: ByteToMessageDecoder {
    typealias InboundOut = String

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let end = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > 8_192 { throw SMTPError.rejected(command: "(reading a reply)", reply: "a line over 8 KiB") }
            return .needMoreData
        }
        let length = end - buffer.readerIndex + 1
        guard let line = buffer.readString(length: length) else { return .needMoreData }
        // "\r\n" is one Character in Swift: trim scalars, not characters.
        context.fireChannelRead(wrapInboundOut(line.trimmingCharacters(in: .newlines)))
        return .continue
    }
}
