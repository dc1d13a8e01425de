@testable import FedIO
@testable import FedLogic
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

/// CURVE with the ZAP allow-list over loopback TCP.
@Suite("CURVE allow-list", .timeLimit(.minutes(1)))
struct CurveTests {
    @Test("An enrolled agent completes the handshake and its messages carry its enrolled id; an unenrolled key is refused")
    func enrolledAndUnenrolled() async throws {
        let context = try ZMQContext()
        let server = BoxKeyPair()
        let enrolled = BoxKeyPair()
        let stranger = BoxKeyPair()
        let zap = try ZAPAuthenticator(context: context, allowList: [enrolled.publicKey: "region-1"])
        defer { zap.close() }
        var serverOptions = ZMQSocketOptions()
        serverOptions.curve = .server(keys: server)
        let router = try ZMQChannel(context: context, configuration: .init(
            kind: .router, options: serverOptions, bind: ["tcp://127.0.0.1:*"]))
        defer { router.close() }

        func client(_ keys: BoxKeyPair) throws -> ZMQChannel {
            var options = ZMQSocketOptions()
            options.curve = .client(keys: keys, serverKey: server.publicKey)
            options.reconnectIntervalMilliseconds = 50
            return try ZMQChannel(context: context, configuration: .init(
                kind: .dealer, options: options, connect: router.boundEndpoints))
        }

        let good = try client(enrolled)
        let bad = try client(stranger)
        defer { good.close(); bad.close() }

        // The stranger's handshake fails with ZAP status 400, reported by its monitor.
        var refusal: ZMQSocketEvent?
        for await event in bad.events where event.kind == .handshakeFailedAuthentication {
            refusal = event
            break
        }
        #expect(refusal?.value == 400)

        try await good.send([Array("hi".utf8)])
        var iterator = router.messages.makeAsyncIterator()
        let message = try #require(try await iterator.next())
        #expect(message.userID == "region-1")
        #expect(message.frames.last == Array("hi".utf8))
        #expect(zap.admitted >= 1 && zap.refused >= 1)
    }

    @Test("A client that expects another server key never connects")
    func wrongServerKey() async throws {
        let context = try ZMQContext()
        let server = BoxKeyPair()
        let client = BoxKeyPair()
        let zap = try ZAPAuthenticator(context: context, allowList: [client.publicKey: "region-1"])
        defer { zap.close() }
        var serverOptions = ZMQSocketOptions()
        serverOptions.curve = .server(keys: server)
        let router = try ZMQChannel(context: context, configuration: .init(
            kind: .router, options: serverOptions, bind: ["tcp://127.0.0.1:*"]))
        var options = ZMQSocketOptions()
        options.curve = .client(keys: client, serverKey: BoxKeyPair().publicKey)
        let dealer = try ZMQChannel(context: context, configuration: .init(
            kind: .dealer, options: options, connect: router.boundEndpoints))
        defer { dealer.close(); router.close() }
        var failed = false
        for await event in dealer.events {
            if event.kind == .handshakeSucceeded { break }
            if event.kind == .handshakeFailedProtocol || event.kind == .handshakeFailedNoDetail || event.kind == .disconnected {
                failed = true
                break
            }
        }
        #expect(failed)
    }
}
