@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

/// Round trips over real libzmq sockets on inproc:// and loopback TCP.
@Suite("Transport", .timeLimit(.minutes(1)))
struct TransportTests {
    private static func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
    }

    private static func first(_ channel: ZMQChannel, within seconds: Double = 10) async throws -> ZMQMessage? {
        try await channel.receive(timeout: .seconds(seconds))
    }

    @Test("ROUTER/DEALER carries multipart and 8 MiB messages both ways")
    func routerDealerRoundTrip() async throws {
        let context = try ZMQContext()
        let router = try ZMQChannel(context: context, configuration: .init(kind: .router, bind: ["tcp://127.0.0.1:*"]))
        var options = ZMQSocketOptions()
        options.routingID = Array("agent-7".utf8)
        let dealer = try ZMQChannel(context: context, configuration: .init(
            kind: .dealer, options: options, connect: router.boundEndpoints))
        defer { dealer.close(); router.close() }

        let big = Self.pattern(8 << 20, seed: 3)
        try await dealer.send([.bytes(Array("hello".utf8)), .block(ByteBlock(copying: big)), .bytes([])])
        let received = try #require(try await Self.first(router))
        #expect(received.frames.count == 4)
        #expect(received.frames[0] == Array("agent-7".utf8))  // routing id added by ROUTER
        #expect(received.frames[1] == Array("hello".utf8))
        #expect(received.frames[2] == big)
        #expect(received.frames[3].isEmpty)

        let reply = Self.pattern(8 << 20, seed: 9)
        try await router.send([.bytes(received.frames[0]), .block(ByteBlock(copying: reply))])
        let back = try #require(try await Self.first(dealer))
        #expect(back.frames == [reply])
    }

    @Test("PUB/SUB delivers multipart and 8 MiB messages to a subscriber of the topic only")
    func pubSubRoundTrip() async throws {
        let context = try ZMQContext()
        let publisher = try ZMQChannel(context: context, configuration: .init(kind: .pub, bind: ["inproc://pubsub"]))
        let subscriber = try ZMQChannel(context: context, configuration: .init(
            kind: .sub, connect: ["inproc://pubsub"], subscriptions: [Array("model".utf8)]))
        defer { subscriber.close(); publisher.close() }
        let big = Self.pattern(8 << 20, seed: 1)
        // PUB drops messages until the subscription has propagated: publish until one arrives.
        let publishing = Task {
            while !Task.isCancelled {
                try await publisher.send([.bytes(Array("other".utf8)), .bytes([1])])
                try await publisher.send([.bytes(Array("model".utf8)), .block(ByteBlock(copying: big))])
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        let message = try #require(try await Self.first(subscriber, within: 20))
        publishing.cancel()
        #expect(message.frames.count == 2)
        #expect(message.frames[0] == Array("model".utf8))
        #expect(message.frames[1] == big)
    }

    @Test("A message over ZMQ_MAXMSGSIZE is refused and the link recovers for smaller ones")
    func maxMessageSize() async throws {
        let context = try ZMQContext()
        var limited = ZMQSocketOptions()
        limited.maxMessageBytes = 1024
        let router = try ZMQChannel(context: context, configuration: .init(
            kind: .router, options: limited, bind: ["tcp://127.0.0.1:*"]))
        var dealerOptions = ZMQSocketOptions()
        dealerOptions.reconnectIntervalMilliseconds = 10
        let dealer = try ZMQChannel(context: context, configuration: .init(
            kind: .dealer, options: dealerOptions, connect: router.boundEndpoints))
        defer { dealer.close(); router.close() }
        try await dealer.send([Self.pattern(4096, seed: 0)])
        #expect(try await Self.first(router, within: 1) == nil, "an oversized message must not be delivered")
        // libzmq drops the connection; the dealer reconnects and small messages flow again.
        var delivered: ZMQMessage?
        for _ in 0..<50 where delivered == nil {
            try await dealer.send([[42]])
            delivered = try await Self.first(router, within: 0.2)
        }
        #expect(delivered?.frames.last == [42])
    }

    @Test("A blocking receive returns nil when its timeout elapses")
    func receiveTimeout() throws {
        let context = try ZMQContext()
        var options = ZMQSocketOptions()
        options.receiveTimeoutMilliseconds = 50
        let socket = try ZMQSocket(.pull, in: context, options: options)
        try socket.bind("inproc://timeout")
        let start = ContinuousClock.now
        #expect(try socket.receive() == nil)
        #expect(ContinuousClock.now - start >= .milliseconds(40))
    }

    @Test("Cancelling the consumer and closing the channel ends the receive loop promptly")
    func cleanCancellation() async throws {
        let context = try ZMQContext()
        let channel = try ZMQChannel(context: context, configuration: .init(kind: .pull, bind: ["inproc://cancel"]))
        let consumer = Task {
            var count = 0
            for try await _ in channel.messages { count += 1 }
            return count
        }
        try await Task.sleep(for: .milliseconds(50))
        consumer.cancel()
        let start = ContinuousClock.now
        channel.close()
        #expect(try await consumer.value == 0)
        // The I/O thread exits within one poll interval (250 ms); the bound is loose because parallel
        // CPU-heavy suites can delay the consumer task's scheduling on a 2-core machine.
        #expect(ContinuousClock.now - start < .seconds(10))
        await #expect(throws: ZMQError.self) { try await channel.send([[1]]) }
    }

    @Test("Binding an address in use fails with addressInUse and a fix in the message")
    func addressInUse() throws {
        let context = try ZMQContext()
        let first = try ZMQChannel(context: context, configuration: .init(kind: .router, bind: ["tcp://127.0.0.1:*"]))
        defer { first.close() }
        let error = #expect(throws: ZMQError.self) {
            _ = try ZMQChannel(context: context, configuration: .init(kind: .router, bind: first.boundEndpoints))
        }
        #expect(error?.code == .addressInUse)
        #expect(error?.description.contains("choose another port") == true)
    }

    @Test("A full send queue suspends the sender instead of dropping or failing")
    func sendBackPressure() async throws {
        let context = try ZMQContext()
        var options = ZMQSocketOptions()
        options.sendHighWaterMark = 2
        let push = try ZMQChannel(context: context, configuration: .init(kind: .push, options: options,
                                                                          connect: ["inproc://bp"]))
        defer { push.close() }
        // No peer bound yet: inproc connect-before-bind queues up to the high-water mark, then send waits.
        let sender = Task {
            for index in 0..<10 { try await push.send([[UInt8(index)]]) }
        }
        try await Task.sleep(for: .milliseconds(200))
        // Receive through a channel too, so no cooperative thread blocks in libzmq while the sender needs one.
        var pullOptions = ZMQSocketOptions()
        pullOptions.receiveHighWaterMark = 2
        let pull = try ZMQChannel(context: context, configuration: .init(kind: .pull, options: pullOptions,
                                                                          bind: ["inproc://bp"], inboxCapacity: 1))
        defer { pull.close() }
        var received: [UInt8] = []
        while received.count < 10, let message = try await pull.receive(timeout: .seconds(30)) {
            received += message.frames[0]
        }
        try await sender.value
        #expect(received == Array(0..<10))
    }

    @Test("A channel's buffer keeps no element once it was taken or dropped (received messages hold libzmq's buffers)")
    func bufferReleasesTakenElements() async throws {
        final class Payload: Sendable {}
        let buffer = ChannelBuffer<Payload>(capacity: 4_096)
        var taken: [Payload?] = []
        weak var first: Payload?
        weak var last: Payload?
        for index in 0..<2_000 {
            let payload = Payload()
            if index == 0 { first = payload }
            if index == 1_999 { last = payload }
            buffer.push(payload)
        }
        for _ in 0..<2_000 { taken.append(try await buffer.next()) }
        #expect(taken.allSatisfy { $0 != nil })
        #expect(first != nil && last != nil, "still held by the test")
        taken.removeAll()
        #expect(first == nil, "the first element taken is still referenced")
        #expect(last == nil, "the last element taken is still referenced")

        // Dropped as the oldest beyond a limit (the event buffers): released too.
        let events = ChannelBuffer<Payload>(capacity: .max)
        weak var dropped: Payload?
        do {
            let payload = Payload()
            dropped = payload
            events.push(payload, dropOldestBeyond: 2)
        }
        for _ in 0..<3 { events.push(Payload(), dropOldestBeyond: 2) }
        #expect(dropped == nil, "an element dropped as the oldest is still referenced")
    }
}
