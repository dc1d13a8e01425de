@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import TestSupport
import Testing

/// A misbehaving but enrolled agent ("mallory", played in-process by the test with its real keys)
/// sends every kind of bad update to a real aggregator while a real agent takes part in the round.
@Suite("Bad updates against a real aggregator", .serialized, .timeLimit(.minutes(5)))
struct RejectionTests {
    @Test("Malformed, size-mismatched, oversized, replayed, unsigned, wrongly sealed, wrong-round, NaN, wrongly sized and over-norm updates are each rejected with their reason while the round carries on")
    func everyBadUpdateRejected() async throws {
        // "absent" is enrolled but never runs, so the round stays open until its deadline: the honest agent
        // trains faster than mallory's checks take, and two answers would close it.
        let agents = [(id: "region-1", users: 30), (id: "mallory", users: 5), (id: "absent", users: 5)]
        let federation = try await Federation(agents: agents, enrolled: agents.map(\.id), aggregatorSettings: """
            max_message_bytes: 2097152
            secure_aggregation: {enabled: false}
            rounds: {min_agents: 1, timeout_seconds: 40, sampling_rate: 1.0, clip_norm: 1.0, sequence_length: 20}

            """)
        let aggregator = try federation.start("aggregator", ["run", "--config", "aggregator.yaml", "--rounds", "1"])
        defer { aggregator.terminate() }
        let honest = try federation.start("edge-agent", ["run", "--config", "region-1.yaml"])
        defer { honest.terminate() }

        let mallory = try EnrolledClient(federation, agentID: "mallory")
        let channel = mallory.channel, sealer = mallory.sealer, opener = mallory.opener, identity = mallory.identity
        defer { channel.close() }

        func send(_ kind: MessageKind, _ envelope: ByteBlock) async throws {
            try await channel.send([.bytes(WireHeader(kind: kind).bytes), .block(envelope)])
        }
        func reply() async throws -> (kind: MessageKind, payload: [UInt8]) {
            let message = try #require(try await channel.receive(timeout: .seconds(60)), "no reply from the aggregator")
            let header = try WireHeader(decoding: message.frames[0])
            return (header.kind, try opener.open(message.frames[1], expecting: .init(kind: header.kind.rawValue)).payload)
        }
        func verdict() async throws -> Verdict {
            while true {
                let (kind, payload) = try await reply()
                if kind == .verdict { return try Verdict(decoding: payload) }
            }
        }

        // Register until the welcome shows an open round (the round opens once an agent is live).
        var open: RoundOpen?
        for _ in 0..<40 where open == nil {
            try await send(.hello, sealer.seal(Hello(agentID: "mallory", softwareVersion: "test",
                                                     sentAtMilliseconds: 0).encoded(), kind: MessageKind.hello.rawValue,
                                               round: 0))
            let (kind, payload) = try await reply()
            if kind == .welcome { open = try Welcome(decoding: payload).openRound }
            if open == nil { try await Task.sleep(for: .milliseconds(250)) }
        }
        let round = try #require(open, "no round opened").round
        let count = LSTMShape.small.layout.count
        func update(_ values: [Float], users: UInt32 = 1, round: UInt64 = round) -> [UInt8] {
            UpdateSubmission(round: round, modelVersion: 0, users: users, values: values).encoded()
        }
        func sealed(_ payload: [UInt8], round: UInt64 = round) throws -> ByteBlock {
            try sealer.seal(payload, kind: MessageKind.update.rawValue, round: round)
        }
        let zeros = [Float](repeating: 0, count: count)
        var nan = zeros
        nan[7] = .nan
        var declaresMore = update(zeros)
        declaresMore.withUnsafeMutableBytes {
            $0.storeBytes(of: UInt64(count + 1).littleEndian, toByteOffset: $0.count - 8, as: UInt64.self)
        }
        var unsigned = try sealed(update(zeros)).bytes
        unsigned.replaceSubrange((unsigned.count - 64)..., with: [UInt8](repeating: 0, count: 64))
        let stranger = EnvelopeSealer(identity: identity, senderID: "mallory", recipient: BoxKeyPair().publicKey)

        let cases: [(String, ByteBlock)] = [
            ("malformed", ByteBlock(copying: [UInt8](repeating: 0x5A, count: 100))),
            ("malformed", try sealed(declaresMore)),
            ("bad_signature", ByteBlock(copying: unsigned)),
            ("wrong_recipient", try stranger.seal(update(zeros), kind: MessageKind.update.rawValue, round: round)),
            ("wrong_round", try sealed(update(zeros, round: round + 5), round: round + 5)),
            ("non_finite", try sealed(update(nan))),
            ("wrong_size", try sealed(update(Array(zeros.dropLast())))),
            ("norm_too_large", try sealed(update([Float](repeating: 1, count: count)))),
        ]
        for (reason, envelope) in cases {
            try await send(.update, envelope)
            let answer = try await verdict()
            #expect(!answer.accepted && answer.reason == reason, "expected \(reason), got \(answer)")
        }
        // A valid update is accepted; the same bytes sent again are a replay.
        let valid = try sealed(update(zeros))
        try await send(.update, valid)
        #expect(try await verdict() == Verdict(round: round, accepted: true, reason: ""))
        try await send(.update, valid)
        let replayed = try await verdict()
        #expect(replayed == Verdict(round: round, accepted: false, reason: "replayed"), "\(replayed)")
        // Larger than max_message_bytes: libzmq drops the connection before anything is read.
        try await send(.update, ByteBlock(copying: [UInt8](repeating: 1, count: 3 << 20)))
        var dropped = false
        for await event in channel.events where event.kind == .disconnected {
            dropped = true
            break
        }
        #expect(dropped)

        // The round carried on and closed with both updates.
        #expect(await aggregator.waitForExit(seconds: 120) == 0, "\(aggregator.output)")
        let rounds = aggregator.lines(startingWith: "round ")
        #expect(rounds.count == 1 && rounds[0].contains("accepted 2") && rounds[0].contains("aggregated"), "\(rounds)")
        let totals = try FederationTests.status(federation)["rejections_total"] as? [String: Int] ?? [:]
        for reason in ["malformed", "bad_signature", "wrong_recipient", "wrong_round", "non_finite", "wrong_size",
                       "norm_too_large", "replayed"] {
            #expect((totals[reason] ?? 0) >= 1, "\(reason) not counted: \(totals)")
        }
        #expect(totals["malformed"] == 2)
    }
}
