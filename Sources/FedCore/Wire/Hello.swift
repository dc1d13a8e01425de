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

/// Aggregator → agent, sealed to the agent: registration accepted.
package struct Welcome: WireMessage {
    package static let kind = MessageKind.welcome
    package var aggregatorID: String
    package var currentRound: UInt64
    package var enrolledAgents: UInt32

    package init(aggregatorID: String, currentRound: UInt64, enrolledAgents: UInt32) {
        self.aggregatorID = aggregatorID
        self.currentRound = currentRound
        self.enrolledAgents = enrolledAgents
    }

    package func encode(into writer: inout ByteWriter) {
        writer.write(string: aggregatorID)
        writer.write(currentRound)
        writer.write(enrolledAgents)
    }

    package init(from reader: inout ByteReader) throws(WireError) {
        aggregatorID = try reader.readString(field: "aggregator id", limit: 64)
        currentRound = try reader.read(field: "round")
        enrolledAgents = try reader.read(field: "enrolled agents")
    }
}
