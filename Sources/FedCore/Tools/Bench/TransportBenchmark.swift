import FedIO
import FedLogic
import FedModel
import FedNode
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
        /// Sealing and opening alone (no transport), on all cores of this process.
        package let sealOnlyGbps: Double
        package let openOnlyGbps: Double

        package func rate(_ variant: Variant) -> Double { gbps[variant] ?? 0 }

        package var jsonLine: String {
            func number(_ value: Double) -> String { String(format: "%.4f", value) }
            return "{\"size_bytes\":\(sizeBytes),\"raw_gbps\":\(number(rate(.raw))),\"curve_gbps\":\(number(rate(.curve))),"
                + "\"sealed_gbps\":\(number(rate(.sealed))),\"sealed_curve_gbps\":\(number(rate(.sealedCurve))),"
                + "\"sealed_time_over_raw\":\(number(rate(.raw) / rate(.sealed))),"
                + "\"sealed_curve_time_over_curve\":\(number(rate(.curve) / rate(.sealedCurve))),"
                + "\"seal_only_gbps\":\(number(sealOnlyGbps)),\"open_only_gbps\":\(number(openOnlyGbps))}"
        }

        package var table: String {
            let size = sizeBytes >= 1 << 20 ? "\(sizeBytes >> 20) MiB" : "\(sizeBytes >> 10) KiB"
            return """
                \(size) messages:
                  raw libzmq       \(String(format: "%6.3f", rate(.raw))) GB/s
                  CURVE only       \(String(format: "%6.3f", rate(.curve))) GB/s
                  sealed only      \(String(format: "%6.3f", rate(.sealed))) GB/s   time ×\(String(format: "%.2f", rate(.raw) / rate(.sealed))) of raw (target ≤ 1.5 at 4 MiB)
                  sealed + CURVE   \(String(format: "%6.3f", rate(.sealedCurve))) GB/s   time ×\(String(format: "%.2f", rate(.curve) / rate(.sealedCurve))) of CURVE only (target ≤ 1.3 at 4 MiB)
                  (no transport)   seal \(String(format: "%.3f", sealOnlyGbps)) GB/s, open \(String(format: "%.3f", openOnlyGbps)) GB/s on all cores
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
            let (seal, open) = try cryptoOnly(size: size, count: max(16, min(bytesPerVariant, 1 << 30) / size))
            progress(String(format: "  seal only %.3f GB/s, open only %.3f GB/s", seal, open))
            results.append(Result(sizeBytes: size, messages: counts, gbps: gbps, sealOnlyGbps: seal, openOnlyGbps: open))
        }
        return results
    }

    /// Seals `count` messages, then opens them, with no transport: the crypto's own rate.
    private func cryptoOnly(size: Int, count: Int) throws -> (seal: Double, open: Double) {
        let aggregator = NodeIdentity()
        let agent = NodeIdentity()
        let sealer = EnvelopeSealer(identity: agent, senderID: "bench", recipient: aggregator.box.publicKey)
        let opener = EnvelopeOpener(recipient: aggregator.box, senders: ["bench": agent.signing.publicKey],
                                    replayMemory: count + 16)
        let payload = [UInt8](repeating: 7, count: size)
        let batch = min(count, max(1, (256 << 20) / size))  // bound memory: at most 256 MiB sealed at once
        var sealSeconds = 0.0, openSeconds = 0.0, done = 0
        while done < count {
            let n = min(batch, count - done)
            var start = ContinuousClock.now
            let sealed = try (0..<n).map { _ in try sealer.seal(payload, kind: MessageKind.update.rawValue, round: 1) }
            sealSeconds += (ContinuousClock.now - start).inSeconds
            start = ContinuousClock.now
            for block in sealed {
                _ = try block.withUnsafeBytes { try opener.open($0, expecting: .init(senderID: "bench", round: 1)) }
            }
            openSeconds += (ContinuousClock.now - start).inSeconds
            done += n
        }
        let bytes = Double(size * count)
        return (bytes / sealSeconds / 1e9, bytes / openSeconds / 1e9)
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
            guard let body = message.parts.last, body.count >= size else { continue }
            if variant.seals {
                _ = try body.withUnsafeBytes { try opener.open($0, expecting: .init(senderID: "bench", round: 1)) }
            }
            received += 1
            if received == count { break }
        }
        try await sent
        return (ContinuousClock.now - start).inSeconds
    }
}
