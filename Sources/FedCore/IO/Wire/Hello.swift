/// Agent → aggregator, sealed: who the agent is and what it runs.
package struct Hello: WireMessage {
    package static let kind = MessageKind.hello
    package var agentID: String
    package var softwareVersion: String
    /// Unix time in milliseconds when the agent sent it.
    package var sentAtMilliseconds: Int64

    package init(agentID: String, softwareVersion: String, sentAtMilliseconds: Int64) {
        self.agentID = agentID
        self.softwareVersion = softwareVersion
        self.sentAtMilliseconds = sentAtMilliseconds
    }

    package func encode(into writer: inout ByteWriter) {
        writer.write(string: agentID)
        writer.write(string: softwareVersion)
        writer.write(sentAtMilliseconds)
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        agentID = try reader.readString(field: "agent id", limit: 64)
        softwareVersion = try reader.readString(field: "software version", limit: 64)
        sentAtMilliseconds = try reader.read(field: "sent at")
    }
}

/// Aggregator → agent, sealed to the agent: registration accepted, with a snapshot of the federation
/// (the zguide "clone" pattern): the current model version, the open round if any and whether it still
/// waits for this agent, and the newest drift thresholds. A late or reconnecting agent learns from it
/// everything the announcements it missed would have said.
package struct Welcome: WireMessage {
    package static let kind = MessageKind.welcome
    package var aggregatorID: String
    /// The last round opened (0 before the first).
    package var currentRound: UInt64
    package var enrolledAgents: UInt32
    /// Version of the current global model (0 = the initial model).
    package var modelVersion: UInt64
    /// The round being collected, if one is open.
    package var openRound: RoundOpen?
    /// Whether the open round has not yet received an update from this agent.
    package var awaitingUpdate: Bool
    /// The newest calibrated drift thresholds; empty until the first calibration.
    package var thresholds: [Float]
    /// This agent's party number in secure-aggregation rounds (its Shamir evaluation point, ≥ 1).
    package var party: UInt64
    /// The aggregator's wall clock when it sent this (unix ms; 0: not given). Round deadlines are on
    /// this clock: the agent measures how far its own clock is off and converts them.
    package var aggregatorTimeMilliseconds: Int64

    package init(aggregatorID: String, currentRound: UInt64, enrolledAgents: UInt32, modelVersion: UInt64 = 0,
                 openRound: RoundOpen? = nil, awaitingUpdate: Bool = false, thresholds: [Float] = [], party: UInt64 = 1,
                 aggregatorTimeMilliseconds: Int64 = 0) {
        self.party = party
        self.aggregatorTimeMilliseconds = aggregatorTimeMilliseconds
        self.aggregatorID = aggregatorID
        self.currentRound = currentRound
        self.enrolledAgents = enrolledAgents
        self.modelVersion = modelVersion
        self.openRound = openRound
        self.awaitingUpdate = awaitingUpdate
        self.thresholds = thresholds
    }

    package func encode(into writer: inout ByteWriter) {
        writer.write(string: aggregatorID)
        writer.write(currentRound)
        writer.write(enrolledAgents)
        writer.write(modelVersion)
        if let openRound {
            writer.write(UInt8(1))
            openRound.encode(into: &writer)
        } else {
            writer.write(UInt8(0))
        }
        writer.write(UInt8(awaitingUpdate ? 1 : 0))
        writer.write(UInt16(thresholds.count))
        for threshold in thresholds { writer.write(threshold) }
        writer.write(party)
        writer.write(aggregatorTimeMilliseconds)
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        aggregatorID = try reader.readString(field: "aggregator id", limit: 64)
        currentRound = try reader.read(field: "round")
        enrolledAgents = try reader.read(field: "enrolled agents")
        modelVersion = try reader.read(field: "model version")
        switch try reader.read(UInt8.self, field: "open round flag") {
        case 0: openRound = nil
        case 1: openRound = try RoundOpen(from: &reader)
        case let flag: throw .invalidValue(field: "open round flag", reason: "\(flag)")
        }
        let awaiting = try reader.read(UInt8.self, field: "awaiting update")
        guard awaiting <= 1 else { throw .invalidValue(field: "awaiting update", reason: "\(awaiting)") }
        awaitingUpdate = awaiting == 1
        thresholds = try DriftThresholdsMessage.readThresholds(from: &reader)
        party = try reader.read(field: "party")
        guard party >= 1 else { throw .invalidValue(field: "party", reason: "0") }
        aggregatorTimeMilliseconds = try reader.read(field: "aggregator time")
        guard aggregatorTimeMilliseconds >= 0 else {
            throw .invalidValue(field: "aggregator time", reason: "\(aggregatorTimeMilliseconds) < 0")
        }
    }
}

/// Agent → aggregator, sealed: send me the current global model (as sealed ``ModelChunk``s).
package struct ModelRequest: WireMessage {
    package static let kind = MessageKind.modelRequest
    /// The version the agent holds (0 if none), for the aggregator's log.
    package var heldVersion: UInt64

    package init(heldVersion: UInt64) { self.heldVersion = heldVersion }

    package func encode(into writer: inout ByteWriter) { writer.write(heldVersion) }

    package init(from reader: inout ByteReader) throws(WireError) {
        heldVersion = try reader.read(field: "held version")
    }
}

/// Agent → aggregator, sealed: how the global model `modelVersion` predicts each evaluated user's
/// held-out most recent event (never trained on). Counts, not per-user values.
package struct EvaluationReport: WireMessage {
    package static let kind = MessageKind.metrics
    package var round: UInt64
    package var modelVersion: UInt64
    /// Users evaluated (each contributes one held-out next-category prediction).
    package var users: UInt32
    /// Held-out events whose category was the model's first choice / among its top 10.
    package var top1Hits: UInt32
    package var top10Hits: UInt32
    /// Σ over users of the held-out event's cross-entropy (nats).
    package var lossSum: Double

    package init(round: UInt64, modelVersion: UInt64, users: UInt32, top1Hits: UInt32, top10Hits: UInt32,
                 lossSum: Double) {
        self.round = round
        self.modelVersion = modelVersion
        self.users = users
        self.top1Hits = top1Hits
        self.top10Hits = top10Hits
        self.lossSum = lossSum
    }

    package func encode(into writer: inout ByteWriter) {
        writer.write(round)
        writer.write(modelVersion)
        writer.write(users)
        writer.write(top1Hits)
        writer.write(top10Hits)
        writer.write(lossSum)
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        round = try reader.read(field: "round")
        modelVersion = try reader.read(field: "model version")
        users = try reader.read(field: "users")
        top1Hits = try reader.read(field: "top-1 hits")
        top10Hits = try reader.read(field: "top-10 hits")
        lossSum = try reader.readDouble(field: "loss sum")
        guard top1Hits <= top10Hits, top10Hits <= users, lossSum.isFinite, lossSum >= 0 else {
            throw .invalidValue(field: "evaluation", reason: "inconsistent counts")
        }
    }
}
