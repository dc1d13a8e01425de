/// A FedDrift protocol message body: a fixed little-endian layout (documented in docs/PROTOCOL.md),
/// written with ``ByteWriter`` and read with ``ByteReader``. Bodies travel inside sealed envelopes
/// (unicast) or signed broadcasts, never in the clear; the envelope binds the ``MessageKind``.
package protocol WireMessage: Sendable, Equatable {
    static var kind: MessageKind { get }
    func encode(into writer: inout ByteWriter)
    init(from reader: inout ByteReader) throws(WireError)
}

extension WireMessage {
    package func encoded() -> [UInt8] {
        var writer = ByteWriter()
        encode(into: &writer)
        return writer.bytes
    }

    /// Decodes a whole body; trailing bytes are an error.
    package init(decoding bytes: [UInt8]) throws(WireError) {
        self = try bytes.withBytes { (raw) throws(WireError) in
            var reader = ByteReader(raw)
            let message = try Self(from: &reader)
            try reader.finish()
            return message
        }
    }
}

/// Aggregator → agents: round `round` is open until `deadline`, on model `modelVersion`.
package struct RoundOpen: WireMessage {
    package static let kind = MessageKind.roundOpen
    package var round: UInt64
    package var modelVersion: UInt64
    /// Unix time in milliseconds after which updates for this round are refused.
    package var deadlineMilliseconds: Int64
    package var minAgents: UInt32
    package var hyperparameters: Hyperparameters

    /// The round's training hyper-parameters in wire order (FedLogic's `RoundHyperparameters` explains
    /// each; the node layer maps between the two).
    package struct Hyperparameters: Sendable, Equatable {
        package var samplingRate, clipNorm, noiseMultiplier, learningRate: Double
        package var localSteps, sequenceLength: UInt32
        package var clipCountNoiseMultiplier, histogramNoiseMultiplier: Double
        /// Secure aggregation: the threshold t and the grid's bits per clip norm; 0 and 0 for a plain round.
        package var secureThreshold, secureBits: UInt32

        package init(samplingRate: Double, clipNorm: Double, noiseMultiplier: Double, learningRate: Double,
                     localSteps: UInt32, sequenceLength: UInt32, clipCountNoiseMultiplier: Double,
                     histogramNoiseMultiplier: Double, secureThreshold: UInt32 = 0, secureBits: UInt32 = 0) {
            (self.secureThreshold, self.secureBits) = (secureThreshold, secureBits)
            (self.samplingRate, self.clipNorm, self.noiseMultiplier, self.learningRate) =
                (samplingRate, clipNorm, noiseMultiplier, learningRate)
            (self.localSteps, self.sequenceLength) = (localSteps, sequenceLength)
            (self.clipCountNoiseMultiplier, self.histogramNoiseMultiplier) =
                (clipCountNoiseMultiplier, histogramNoiseMultiplier)
        }
    }

    package init(round: UInt64, modelVersion: UInt64, deadlineMilliseconds: Int64, minAgents: UInt32,
                 hyperparameters: Hyperparameters) {
        self.round = round
        self.modelVersion = modelVersion
        self.deadlineMilliseconds = deadlineMilliseconds
        self.minAgents = minAgents
        self.hyperparameters = hyperparameters
    }

    package func encode(into writer: inout ByteWriter) {
        writer.write(round)
        writer.write(modelVersion)
        writer.write(deadlineMilliseconds)
        writer.write(minAgents)
        writer.write(hyperparameters.samplingRate)
        writer.write(hyperparameters.clipNorm)
        writer.write(hyperparameters.noiseMultiplier)
        writer.write(hyperparameters.learningRate)
        writer.write(hyperparameters.localSteps)
        writer.write(hyperparameters.sequenceLength)
        writer.write(hyperparameters.clipCountNoiseMultiplier)
        writer.write(hyperparameters.histogramNoiseMultiplier)
        writer.write(hyperparameters.secureThreshold)
        writer.write(hyperparameters.secureBits)
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        round = try reader.read(field: "round")
        modelVersion = try reader.read(field: "model version")
        deadlineMilliseconds = try reader.read(field: "deadline")
        minAgents = try reader.read(field: "min agents")
        let samplingRate = try reader.readDouble(field: "sampling rate")
        let clipNorm = try reader.readDouble(field: "clip norm")
        let noise = try reader.readDouble(field: "noise multiplier")
        let learningRate = try reader.readDouble(field: "learning rate")
        guard (0...1).contains(samplingRate), clipNorm > 0, clipNorm.isFinite, noise >= 0, noise.isFinite,
              learningRate > 0, learningRate.isFinite else {
            throw .invalidValue(field: "hyperparameters", reason: "out of range")
        }
        let localSteps: UInt32 = try reader.read(field: "local steps")
        let sequenceLength: UInt32 = try reader.read(field: "sequence length")
        let countNoise = try reader.readDouble(field: "clip count noise multiplier")
        guard countNoise >= 0, countNoise.isFinite else {
            throw .invalidValue(field: "clip count noise multiplier", reason: "\(countNoise)")
        }
        let histogramNoise = try reader.readDouble(field: "histogram noise multiplier")
        guard histogramNoise >= 0, histogramNoise.isFinite else {
            throw .invalidValue(field: "histogram noise multiplier", reason: "\(histogramNoise)")
        }
        let secureThreshold: UInt32 = try reader.read(field: "secure threshold")
        let secureBits: UInt32 = try reader.read(field: "secure bits")
        guard (secureThreshold == 0 && secureBits == 0) || (secureThreshold >= 2 && (1...30).contains(secureBits)) else {
            throw .invalidValue(field: "secure aggregation", reason: "threshold \(secureThreshold), bits \(secureBits)")
        }
        hyperparameters = Hyperparameters(
            samplingRate: samplingRate, clipNorm: clipNorm, noiseMultiplier: noise, learningRate: learningRate,
            localSteps: localSteps, sequenceLength: sequenceLength, clipCountNoiseMultiplier: countNoise,
            histogramNoiseMultiplier: histogramNoise, secureThreshold: secureThreshold, secureBits: secureBits)
    }
}

/// Aggregator → agents: one chunk of a model file (``ModelFile`` bytes), so a model of any size
/// streams under the link's message size limit.
package struct ModelChunk: WireMessage {
    package static let kind = MessageKind.modelChunk
    package static let maxChunkBytes = 1 << 20
    package var modelVersion: UInt64
    package var index: UInt32
    package var count: UInt32
    /// Size of the whole model file, bytes.
    package var totalBytes: UInt64
    package var bytes: [UInt8]

    package init(modelVersion: UInt64, index: UInt32, count: UInt32, totalBytes: UInt64, bytes: [UInt8]) {
        self.modelVersion = modelVersion
        self.index = index
        self.count = count
        self.totalBytes = totalBytes
        self.bytes = bytes
    }

    /// Splits a model file into chunks of at most `chunkBytes`.
    package static func chunks(of file: [UInt8], modelVersion: UInt64, chunkBytes: Int = maxChunkBytes) -> [ModelChunk] {
        let count = max(1, (file.count + chunkBytes - 1) / chunkBytes)
        return (0..<count).map { index in
            let range = (index * chunkBytes)..<min(file.count, (index + 1) * chunkBytes)
            return ModelChunk(modelVersion: modelVersion, index: UInt32(index), count: UInt32(count),
                              totalBytes: UInt64(file.count), bytes: Array(file[range]))
        }
    }

    package func encode(into writer: inout ByteWriter) {
        writer.write(modelVersion)
        writer.write(index)
        writer.write(count)
        writer.write(totalBytes)
        writer.write(lengthPrefixed: bytes)
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        modelVersion = try reader.read(field: "model version")
        index = try reader.read(field: "chunk index")
        count = try reader.read(field: "chunk count")
        totalBytes = try reader.read(field: "total bytes")
        guard count > 0, index < count, totalBytes <= 1 << 34 else {
            throw .invalidValue(field: "chunk", reason: "index \(index) of \(count), \(totalBytes) bytes")
        }
        bytes = try reader.readLengthPrefixed(field: "chunk bytes", limit: Self.maxChunkBytes)
    }
}

/// Agent → aggregator (sealed): the sum of its sampled users' clipped deltas, noised at the agent
/// when privacy is on. Layout: the float32 values first, then a 28-byte trailer (round, model version,
/// users, noisy clip count, declared count), so that the aggregator can decrypt an update straight into the float
/// storage it averages from and only drop the trailer (``init(opened:)``). The declared count must
/// match the values carried.
package struct UpdateSubmission: WireMessage {
    package static let kind = MessageKind.update
    static let trailerBytes = 36
    package var round: UInt64
    package var modelVersion: UInt64
    /// Users in the sum. Zero when privacy is on: the exact count is itself data-dependent.
    package var users: UInt32
    /// Adaptive clipping: the noised count of sampled users whose delta was within S (0 when off).
    package var clipCount: Double
    package var values: [Float]

    package init(round: UInt64, modelVersion: UInt64, users: UInt32, clipCount: Double = 0, values: [Float]) {
        self.round = round
        self.modelVersion = modelVersion
        self.users = users
        self.clipCount = clipCount
        self.values = values
    }

    package func encode(into writer: inout ByteWriter) {
        values.withUnsafeBytes { writer.write(raw: $0) }  // float32, little-endian hosts only (x86-64, arm64)
        writer.write(round)
        writer.write(modelVersion)
        writer.write(users)
        writer.write(clipCount)
        writer.write(UInt64(values.count))
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        let valueBytes = reader.remaining - Self.trailerBytes
        guard valueBytes >= 0, valueBytes % 4 == 0 else {
            throw .invalidValue(field: "values", reason: "\(reader.remaining) bytes is not float32 values and a trailer")
        }
        values = try reader.readFloats(count: valueBytes / 4, field: "values")
        (round, modelVersion, users, clipCount) = try Self.readTrailer(&reader, carried: valueBytes / 4)
    }

    /// Decodes an update decrypted into float storage, using that storage for the values (no copy).
    package init(opened: OpenedFloatEnvelope) throws(WireError) {
        let valueBytes = opened.byteCount - Self.trailerBytes
        guard valueBytes >= 0, valueBytes % 4 == 0 else {
            throw .invalidValue(field: "values", reason: "\(opened.byteCount) bytes is not float32 values and a trailer")
        }
        let trailer = opened.storage.withUnsafeBytes { raw in
            var reader = ByteReader(UnsafeRawBufferPointer(rebasing: raw[valueBytes..<opened.byteCount]))
            return Result { () throws(WireError) in try Self.readTrailer(&reader, carried: valueBytes / 4) }
        }
        (round, modelVersion, users, clipCount) = try trailer.get()
        values = opened.storage
        values.removeLast(values.count - valueBytes / 4)
    }

    private static func readTrailer(_ reader: inout ByteReader, carried: Int) throws(WireError)
        -> (round: UInt64, modelVersion: UInt64, users: UInt32, clipCount: Double)
    {
        let round: UInt64 = try reader.read(field: "round")
        let modelVersion: UInt64 = try reader.read(field: "model version")
        let users: UInt32 = try reader.read(field: "users")
        let clipCount = try reader.readDouble(field: "clip count")
        guard clipCount.isFinite else { throw .invalidValue(field: "clip count", reason: "\(clipCount)") }
        let count = try reader.read(UInt64.self, field: "parameter count")
        guard count == UInt64(carried) else {
            throw .invalidValue(field: "values", reason: "declares \(count) floats, carries \(carried)")
        }
        return (round, modelVersion, users, clipCount)
    }
}

/// Aggregator → agent (sealed): whether its update for `round` was used, and if not, why.
package struct Verdict: WireMessage {
    package static let kind = MessageKind.verdict
    package var round: UInt64
    package var accepted: Bool
    /// A stable label (``UpdateRejection/reason`` or ``EnvelopeError/reason``); empty when accepted.
    package var reason: String

    package init(round: UInt64, accepted: Bool, reason: String) {
        self.round = round
        self.accepted = accepted
        self.reason = reason
    }

    package func encode(into writer: inout ByteWriter) {
        writer.write(round)
        writer.write(UInt8(accepted ? 1 : 0))
        writer.write(string: reason)
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        round = try reader.read(field: "round")
        let flag = try reader.read(UInt8.self, field: "accepted")
        guard flag <= 1 else { throw .invalidValue(field: "accepted", reason: "\(flag)") }
        accepted = flag == 1
        reason = try reader.readString(field: "reason", limit: 64)
    }
}

/// Aggregator → agents: calibrated drift-score thresholds (one per segment) for the round.
package struct DriftThresholdsMessage: WireMessage {
    package static let kind = MessageKind.thresholds
    package var round: UInt64
    package var thresholds: [Float]

    package init(round: UInt64, thresholds: [Float]) {
        self.round = round
        self.thresholds = thresholds
    }

    package func encode(into writer: inout ByteWriter) {
        writer.write(round)
        writer.write(UInt16(thresholds.count))
        for threshold in thresholds { writer.write(threshold) }
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        round = try reader.read(field: "round")
        thresholds = try Self.readThresholds(from: &reader)
    }

    /// A u16 count, then that many finite float32 thresholds (a detector's score can be negative).
    static func readThresholds(from reader: inout ByteReader) throws(WireError) -> [Float] {
        let count = Int(try reader.read(UInt16.self, field: "segments"))
        var thresholds: [Float] = []
        for _ in 0..<count {
            let value = Float(bitPattern: try reader.read(UInt32.self, field: "threshold"))
            guard value.isFinite else { throw .invalidValue(field: "threshold", reason: "\(value)") }
            thresholds.append(value)
        }
        return thresholds
    }
}

/// Either side: liveness and the sender's view of the current round.
package struct Heartbeat: WireMessage {
    package static let kind = MessageKind.heartbeat
    package var sentAtMilliseconds: Int64
    package var round: UInt64

    package init(sentAtMilliseconds: Int64, round: UInt64) {
        self.sentAtMilliseconds = sentAtMilliseconds
        self.round = round
    }

    package func encode(into writer: inout ByteWriter) {
        writer.write(sentAtMilliseconds)
        writer.write(round)
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        sentAtMilliseconds = try reader.read(field: "sent at")
        round = try reader.read(field: "round")
    }
}

/// Agent → aggregator (sealed): the noised histogram of its sampled users' drift scores over the
/// drift-score bin edges both sides share (FedLogic's `DriftHistogram.edges`; the round checks the bin
/// count), for the federated threshold.
package struct DriftHistogramReport: WireMessage {
    package static let kind = MessageKind.driftHistogram
    package var round: UInt64
    package var counts: [Double]

    package init(round: UInt64, counts: [Double]) {
        self.round = round
        self.counts = counts
    }

    package func encode(into writer: inout ByteWriter) {
        writer.write(round)
        writer.write(UInt16(counts.count))
        for count in counts { writer.write(count) }
    }

    /// The most bins a report may carry.
    package static let maxBins = 1_024

    package init(from reader: inout ByteReader) throws(WireError) {
        round = try reader.read(field: "round")
        let count = Int(try reader.read(UInt16.self, field: "bins"))
        guard (1...Self.maxBins).contains(count) else {
            throw .invalidValue(field: "bins", reason: "\(count), expected 1...\(Self.maxBins)")
        }
        var counts: [Double] = []
        for _ in 0..<count {
            let value = try reader.readDouble(field: "count")
            guard value.isFinite else { throw .invalidValue(field: "count", reason: "\(value)") }
            counts.append(value)
        }
        self.counts = counts
    }
}

/// Agent → aggregator (sealed): the shoppers active since the agent's previous release (Poisson-sampled
/// at the round's rate), in total and per model category index (each shopper in at most k categories),
/// each count noised with the declared noise multiplier (standard deviation per count; 0 = exact) —
/// for the aggregator's demand-trend warnings. Layout: round (u64) · noise multiplier (f64) · shoppers
/// (f64) · count (u16) · counts (f64 each).
package struct DemandCountsReport: WireMessage {
    package static let kind = MessageKind.demandCounts
    package var round: UInt64
    package var noiseMultiplier: Double
    package var shoppers: Double
    package var counts: [Double]

    package init(round: UInt64, noiseMultiplier: Double, shoppers: Double, counts: [Double]) {
        (self.round, self.noiseMultiplier, self.shoppers, self.counts) = (round, noiseMultiplier, shoppers, counts)
    }

    /// The most categories a report may carry (the medium model's catalog).
    package static let maxCategories = 4_096

    package func encode(into writer: inout ByteWriter) {
        writer.write(round)
        writer.write(noiseMultiplier)
        writer.write(shoppers)
        writer.write(UInt16(counts.count))
        for count in counts { writer.write(count) }
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        round = try reader.read(field: "round")
        noiseMultiplier = try reader.readDouble(field: "noise multiplier")
        guard noiseMultiplier >= 0, noiseMultiplier.isFinite else {
            throw .invalidValue(field: "noise multiplier", reason: "\(noiseMultiplier)")
        }
        shoppers = try reader.readDouble(field: "shoppers")
        guard shoppers.isFinite else { throw .invalidValue(field: "shoppers", reason: "\(shoppers)") }
        let count = Int(try reader.read(UInt16.self, field: "categories"))
        guard (1...Self.maxCategories).contains(count) else {
            throw .invalidValue(field: "categories", reason: "\(count), expected 1...\(Self.maxCategories)")
        }
        var counts: [Double] = []
        counts.reserveCapacity(count)
        for _ in 0..<count {
            let value = try reader.readDouble(field: "count")
            guard value.isFinite else { throw .invalidValue(field: "count", reason: "\(value)") }
            counts.append(value)
        }
        self.counts = counts
    }
}

/// An agent's receipt for a round: the entries of its signed, hash-chained privacy ledger that the
/// round's releases charged, sent before the update. Layout: round (u64) · count (u16) · per entry: id
/// (i64) · previous hash · round (u64) · mechanism (str) · q (f64) · z (f64) · RDP curve (bytes) · ε after
/// (f64) · time (i64) · hash · signature (byte strings length-prefixed).
package struct LedgerReceiptMessage: WireMessage {
    package static let kind = MessageKind.ledgerReceipt
    package struct Entry: Sendable, Equatable {
        package var id: Int64
        package var previousHash: [UInt8]
        package var round: UInt64
        package var mechanism: String
        package var samplingRate, noiseMultiplier: Double
        package var rdp: [UInt8]
        package var epsilonAfter: Double
        package var createdAtMilliseconds: Int64
        package var hash, signature: [UInt8]

        package init(id: Int64, previousHash: [UInt8], round: UInt64, mechanism: String, samplingRate: Double,
                     noiseMultiplier: Double, rdp: [UInt8], epsilonAfter: Double, createdAtMilliseconds: Int64,
                     hash: [UInt8], signature: [UInt8]) {
            (self.id, self.previousHash, self.round, self.mechanism) = (id, previousHash, round, mechanism)
            (self.samplingRate, self.noiseMultiplier, self.rdp) = (samplingRate, noiseMultiplier, rdp)
            (self.epsilonAfter, self.createdAtMilliseconds, self.hash, self.signature) =
                (epsilonAfter, createdAtMilliseconds, hash, signature)
        }
    }
    package var round: UInt64
    package var entries: [Entry]

    package init(round: UInt64, entries: [Entry]) {
        self.round = round
        self.entries = entries
    }

    /// The most entries one receipt may carry (a round charges at most three).
    package static let maxEntries = 64

    package func encode(into writer: inout ByteWriter) {
        writer.write(round)
        writer.write(UInt16(entries.count))
        for entry in entries {
            writer.write(entry.id)
            writer.write(lengthPrefixed: entry.previousHash)
            writer.write(entry.round)
            writer.write(string: entry.mechanism)
            writer.write(entry.samplingRate)
            writer.write(entry.noiseMultiplier)
            writer.write(lengthPrefixed: entry.rdp)
            writer.write(entry.epsilonAfter)
            writer.write(entry.createdAtMilliseconds)
            writer.write(lengthPrefixed: entry.hash)
            writer.write(lengthPrefixed: entry.signature)
        }
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        round = try reader.read(field: "round")
        let count = Int(try reader.read(UInt16.self, field: "entries"))
        guard (1...Self.maxEntries).contains(count) else {
            throw .invalidValue(field: "entries", reason: "\(count), expected 1...\(Self.maxEntries)")
        }
        entries = []
        for _ in 0..<count {
            entries.append(Entry(
                id: try reader.read(field: "id"), previousHash: try reader.readLengthPrefixed(field: "previous_hash", limit: 64),
                round: try reader.read(field: "entry_round"), mechanism: try reader.readString(field: "mechanism", limit: 64),
                samplingRate: try reader.readDouble(field: "sampling_rate"),
                noiseMultiplier: try reader.readDouble(field: "noise_multiplier"),
                rdp: try reader.readLengthPrefixed(field: "rdp", limit: 16_384),
                epsilonAfter: try reader.readDouble(field: "epsilon_after"),
                createdAtMilliseconds: try reader.read(field: "created_at"),
                hash: try reader.readLengthPrefixed(field: "hash", limit: 64),
                signature: try reader.readLengthPrefixed(field: "signature", limit: 128)))
        }
    }
}
