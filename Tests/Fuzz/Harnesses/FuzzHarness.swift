import FedIO
import FedLogic
import FedModel
import FedNode
import Foundation

/// The fuzzing harnesses: every parser that reads bytes an attacker or a careless operator controls.
///
/// Each harness takes arbitrary bytes and must return — never trap, hang or allocate beyond the
/// configured limits — whatever they hold. Where a parser accepts its input, the harness also checks a
/// property that a silent bug would break (a decoded message re-encodes to a message that decodes to
/// itself; a sealed payload opens to itself and a tampered one never opens) and traps when it fails,
/// so that the fuzzer reports it. `scripts/fuzz` runs them under libFuzzer with AddressSanitizer; the
/// test suite replays the committed corpus (`Tests/Fuzz/Corpus/<harness>/`) through the same code.
package enum FuzzHarness: String, CaseIterable, Sendable {
    /// Every protocol message body (``WireMessage``), the message header and Safetensors.
    case wire
    /// The sealed-envelope opener: raw bytes, seal/open round trips, and tampered envelopes.
    case envelope
    /// The event importers, through ``EventFileReader`` on a file.
    case csv, jsonl
    /// The YAML configuration loaders of both binaries.
    case config
    /// The model-file reader.
    case model

    /// What a harness made of one input.
    package enum Outcome: Sendable, Equatable {
        case accepted
        case refused
    }

    /// Runs the harness on `bytes`; traps only when a checked property fails.
    @discardableResult
    package func run(_ bytes: [UInt8]) -> Outcome {
        switch self {
        case .wire: Self.wire(bytes)
        case .envelope: Self.envelope(bytes)
        case .csv: Self.events(bytes, format: .taobao)
        case .jsonl: Self.events(bytes, format: .jsonl)
        case .config: Self.config(bytes)
        case .model: Self.model(bytes)
        }
    }

    // MARK: wire

    /// Decodes `body` as `M`; on success the message must survive encode → decode unchanged (compared as
    /// bytes: a NaN in a decoded update is valid on the wire and never equal to itself).
    private static func roundTrip<M: WireMessage>(_: M.Type, _ body: [UInt8]) -> Outcome {
        guard let message = try? M(decoding: body) else { return .refused }
        let encoded = message.encoded()
        guard let again = try? M(decoding: encoded), again.encoded() == encoded else {
            fatalError("\(M.self): a decoded message does not survive encode → decode")
        }
        return .accepted
    }

    /// Every message type, in a fixed order (named as the golden fixtures are): the first input byte picks one.
    private static let decoders: [(name: String, decode: @Sendable ([UInt8]) -> Outcome)] = [
        ("hello", { roundTrip(Hello.self, $0) }), ("welcome", { roundTrip(Welcome.self, $0) }),
        ("round-open", { roundTrip(RoundOpen.self, $0) }), ("update", { roundTrip(UpdateSubmission.self, $0) }),
        ("verdict", { roundTrip(Verdict.self, $0) }), ("heartbeat", { roundTrip(Heartbeat.self, $0) }),
        ("model-request", { roundTrip(ModelRequest.self, $0) }), ("model-chunk", { roundTrip(ModelChunk.self, $0) }),
        ("evaluation", { roundTrip(EvaluationReport.self, $0) }),
        ("drift-histogram", { roundTrip(DriftHistogramReport.self, $0) }),
        ("thresholds", { roundTrip(DriftThresholdsMessage.self, $0) }),
        ("demand-counts", { roundTrip(DemandCountsReport.self, $0) }),
        ("ledger-receipt", { roundTrip(LedgerReceiptMessage.self, $0) }),
        ("secure-keys", { roundTrip(SecureKeysMessage.self, $0) }),
        ("secure-roster", { roundTrip(SecureRosterMessage.self, $0) }),
        ("secure-shares", { roundTrip(SecureSharesMessage.self, $0) }),
        ("secure-forwarded-shares", { roundTrip(SecureForwardedSharesMessage.self, $0) }),
        ("secure-masked-input", { roundTrip(SecureMaskedInputMessage.self, $0) }),
        ("secure-survivors", { roundTrip(SecureSurvivorsMessage.self, $0) }),
        ("secure-signature", { roundTrip(SecureSignatureMessage.self, $0) }),
        ("secure-unmask-request", { roundTrip(SecureUnmaskRequestMessage.self, $0) }),
        ("secure-unmask-response", { roundTrip(SecureUnmaskResponseMessage.self, $0) }),
        ("header", { body in
            guard let header = try? WireHeader(decoding: body) else { return .refused }
            precondition(header.bytes == body, "a decoded message header re-encodes differently")
            return .accepted
        }),
        ("safetensors", { body in (try? Safetensors.decode(body)) == nil ? .refused : .accepted }),
    ]

    /// A wire-harness input that decodes `body` as the message type named `name` (a golden fixture's name).
    package static func wireInput(name: String, body: [UInt8]) -> [UInt8]? {
        decoders.firstIndex { $0.name == name }.map { [UInt8($0)] + body }
    }

    private static func wire(_ bytes: [UInt8]) -> Outcome {
        guard let first = bytes.first else { return .refused }
        return decoders[Int(first) % decoders.count].decode(Array(bytes.dropFirst()))
    }

    // MARK: envelope

    private static let recipient = NodeIdentity()
    private static let sender = NodeIdentity()
    /// A valid envelope of two 1 KiB chunks, sealed once, for the tampering mode.
    private static let tamperable: [UInt8] = {
        let sealer = EnvelopeSealer(identity: sender, senderID: "agent", recipient: recipient.box.publicKey,
                                    chunkSize: 1024)
        let payload = (0..<1500).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        guard let sealed = try? sealer.seal(payload, kind: 7, round: 3) else { preconditionFailure("sealing failed") }
        return sealed.bytes
    }()

    /// The first byte picks a mode: open the rest as an envelope; seal the rest and open it (it must
    /// open to itself); or seal a fixed payload, apply the rest as (position, xor) pairs, and open it
    /// (it must be refused unless nothing changed).
    private static func envelope(_ bytes: [UInt8]) -> Outcome {
        guard let mode = bytes.first else { return .refused }
        let rest = Array(bytes.dropFirst())
        let opener = EnvelopeOpener(recipient: recipient.box, senders: ["agent": sender.signing.publicKey],
                                    maxPayloadBytes: 1 << 20, replayMemory: 16)
        let expectation = EnvelopeExpectation(senderID: "agent", kind: 7, round: 3)
        let sealer = EnvelopeSealer(identity: sender, senderID: "agent", recipient: recipient.box.publicKey,
                                    chunkSize: 1024)
        switch mode % 3 {
        case 0:
            return (try? opener.open(rest, expecting: expectation)) == nil ? .refused : .accepted
        case 1:
            guard let sealed = try? sealer.seal(rest, kind: 7, round: 3) else { fatalError("sealing failed") }
            guard let opened = try? opener.open(sealed.bytes, expecting: expectation), opened.payload == rest else {
                fatalError("a sealed payload of \(rest.count) bytes does not open to itself")
            }
            return .accepted
        default:
            var tampered = tamperable
            var pairs = rest[...]
            while pairs.count >= 3 {
                let position = (Int(pairs.removeFirst()) << 8 | Int(pairs.removeFirst())) % tampered.count
                tampered[position] ^= pairs.removeFirst()
            }
            let opened = try? opener.open(tampered, expecting: expectation)
            if tampered != tamperable, opened != nil {
                fatalError("a tampered envelope was opened")
            }
            return opened == nil ? .refused : .accepted
        }
    }

    // MARK: files

    /// A scratch directory of this process (memory-backed where the system has one).
    private static let scratch: String = {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let path = "\(base)/feddrift-fuzz-\(getpid())"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    /// One file per name and thread: tests that run harnesses in parallel never share one.
    private static func write(_ bytes: [UInt8], name: String) -> String {
        let path = "\(scratch)/\(pthread_self())-\(name)"
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    private static func events(_ bytes: [UInt8], format: EventFormat) -> Outcome {
        let path = write(bytes, name: "events.\(format.rawValue)")
        var reader = EventFileReader(path: path, format: format)
        reader.batchSize = 64
        var events = 0
        guard let summary = try? reader.read(handle: { events += $0.count }) else { return .refused }
        precondition(summary.accepted == events, "the summary counts \(summary.accepted) events, the batches \(events)")
        return .accepted
    }

    private static func config(_ bytes: [UInt8]) -> Outcome {
        let path = write(bytes, name: "config.yaml")
        let aggregator = try? AggregatorConfiguration.load(path: path, environment: [:])
        let agent = try? EdgeAgentConfiguration.load(path: path, environment: [:])
        return aggregator == nil && agent == nil ? .refused : .accepted
    }

    private static func model(_ bytes: [UInt8]) -> Outcome {
        guard let (parameters, _) = try? ModelFile.decode(bytes) else { return .refused }
        precondition(parameters.values.count == parameters.shape.layout.count, "a decoded model of the wrong size")
        return .accepted
    }
}
