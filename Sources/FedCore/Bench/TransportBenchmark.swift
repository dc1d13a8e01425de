import Foundation

/// One DEALER→ROUTER stream over loopback TCP, measured four ways in one run: raw libzmq, CURVE only,
/// sealed envelope only, and sealed + CURVE. Each side has its own context (its own libzmq I/O
/// thread), as two processes would.
///
/// Throughput counts payload bytes (the plaintext size) from the first send until the receiver has
/// received (and for sealed variants, verified and opened) the last message. GB/s are 10⁹ bytes/s.
package struct TransportBenchmark: Sendable {
    package enum Variant: String, CaseIterable, Sendable {
        case raw, curve, sealed, sealedCurve = "sealed_curve"
        var usesCurve: Bool { self == .curve || self == .sealedCurve }
        var seals: Bool { self == .sealed || self == .sealedCurve }
    }

    package struct Result: Sendable {
        package let sizeBytes: Int
        package let messages: [Variant: Int]
        package let gbps: [Variant: Double]

        package func rate(_ variant: Variant) -> Double { gbps[variant] ?? 0 }

        package var jsonLine: String {
            func number(_ value: Double) -> String { String(format: "%.4f", value) }
            return "{\"size_bytes\":\(sizeBytes),\"raw_gbps\":\(number(rate(.raw))),\"curve_gbps\":\(number(rate(.curve))),"
                + "\"sealed_gbps\":\(number(rate(.sealed))),\"sealed_curve_gbps\":\(number(rate(.sealedCurve))),"
                + "\"sealed_time_over_raw\":\(number(rate(.raw) / rate(.sealed))),"
                + "\"sealed_curve_time_over_curve\":\(number(rate(.curve) / rate(.sealedCurve)))}"
        }

        package var table: String {
            let size = sizeBytes >= 1 << 20 ? "\(sizeBytes >> 20) MiB" : "\(sizeBytes >> 10) KiB"
            return """
                \(size) messages:
                  raw libzmq       \(String(format: "%6.3f", rate(.raw))) GB/s
                  CURVE only       \(String(format: "%6.3f", rate(.curve))) GB/s
                  sealed only      \(String(format: "%6.3f", rate(.sealed))) GB/s   time ×\(String(format: "%.2f", rate(.raw) / rate(.sealed))) of raw (target ≤ 1.5 at 4 MiB)
                  sealed + CURVE   \(String(format: "%6.3f", rate(.sealedCurve))) GB/s   time ×\(String(format: "%.2f", rate(.curve) / rate(.sealedCurve))) of CURVE only (target ≤ 1.3 at 4 MiB)
                """
        }
    }

    package var bytesPerVariant: Int
    package var sizes: [Int]

    package init(bytesPerVariant: Int = 1 << 30, sizes: [Int] = [64 << 10, 4 << 20]) {
        self.bytesPerVariant = bytesPerVariant
        self.sizes = sizes
    }

    package func run(progress: (String) -> Void = { _ in }) async throws -> [Result] {
        var results: [Result] = []
        for size in sizes {
            var gbps: [Variant: Double] = [:]
            var counts: [Variant: Int] = [:]
            for variant in Variant.allCases {
                let count = max(16, bytesPerVariant / size)
                let seconds = try await measure(variant, size: size, count: count)
                gbps[variant] = Double(size * count) / seconds / 1e9
                counts[variant] = count
                progress(String(format: "  %@ %d bytes × %d: %.3f GB/s", variant.rawValue, size, count, gbps[variant] ?? 0))
            }
            results.append(Result(sizeBytes: size, messages: counts, gbps: gbps))
        }
        return results
    }

    private func measure(_ variant: Variant, size: Int, count: Int) async throws -> Double {
        let senderContext = try ZMQContext()
        let receiverContext = try ZMQContext()
        let aggregator = NodeIdentity()
        let agent = NodeIdentity()
        var zap: ZAPAuthenticator?
        var routerOptions = ZMQSocketOptions()
        var dealerOptions = ZMQSocketOptions()
        routerOptions.receiveHighWaterMark = 64
        dealerOptions.sendHighWaterMark = 64
        if variant.usesCurve {
            zap = try ZAPAuthenticator(context: receiverContext, allowList: [agent.box.publicKey: "bench"])
            routerOptions.curve = .server(keys: aggregator.box)
            dealerOptions.curve = .client(keys: agent.box, serverKey: aggregator.box.publicKey)
        }
        defer { zap?.close() }
        let router = try ZMQChannel(context: receiverContext, configuration: .init(
            kind: .router, options: routerOptions, bind: ["tcp://127.0.0.1:*"], inboxCapacity: 64))
        let dealer = try ZMQChannel(context: senderContext, configuration: .init(
            kind: .dealer, options: dealerOptions, connect: router.boundEndpoints))
        defer {
            dealer.close()
            router.close()
        }
        // Wait for the connection (and handshake) before timing.
        try await dealer.send([[0]])
        guard try await router.receive(timeout: .seconds(10)) != nil else {
            throw ZMQError(code: .wouldBlock, operation: "benchmark", detail: "no connection within 10 s")
        }

        let payload = ByteBlock(count: size) { buffer in
            for index in 0..<size { buffer[index] = UInt8(truncatingIfNeeded: index &* 131) }
        }
        let sealer = EnvelopeSealer(identity: agent, senderID: "bench", recipient: aggregator.box.publicKey)
        let opener = EnvelopeOpener(recipient: aggregator.box, senders: ["bench": agent.signing.publicKey],
                                    replayMemory: count + 16)
        let start = ContinuousClock.now
        async let sent: Void = {
            for _ in 0..<count {
                let frame = variant.seals
                    ? try payload.withUnsafeBytes { try sealer.seal($0, kind: MessageKind.update.rawValue, round: 1) }
                    : payload
                try await dealer.send([.block(frame)])
            }
        }()
        var received = 0
        for try await message in router.messages {
            guard let body = message.frames.last, body.count >= size else { continue }
            if variant.seals {
                _ = try opener.open(body, expecting: .init(senderID: "bench", round: 1))
            }
            received += 1
            if received == count { break }
        }
        try await sent
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }
}
