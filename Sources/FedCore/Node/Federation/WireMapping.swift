package import FedIO
package import FedLogic

// The one gate between wire messages (FedIO) and the domain values the logic layer reasons about
// (FedLogic). Decoding has already range-checked every field; these mappings only change the type.

extension RoundHyperparameters {
    package init(_ wire: RoundOpen.Hyperparameters) {
        self.init(samplingRate: wire.samplingRate, clipNorm: wire.clipNorm, noiseMultiplier: wire.noiseMultiplier,
                  learningRate: wire.learningRate, localSteps: wire.localSteps, sequenceLength: wire.sequenceLength,
                  clipCountNoiseMultiplier: wire.clipCountNoiseMultiplier,
                  histogramNoiseMultiplier: wire.histogramNoiseMultiplier)
        secureThreshold = Int(wire.secureThreshold)
        secureBits = Int(wire.secureBits)
    }

    package var wire: RoundOpen.Hyperparameters {
        RoundOpen.Hyperparameters(
            samplingRate: samplingRate, clipNorm: clipNorm, noiseMultiplier: noiseMultiplier, learningRate: learningRate,
            localSteps: localSteps, sequenceLength: sequenceLength, clipCountNoiseMultiplier: clipCountNoiseMultiplier,
            histogramNoiseMultiplier: histogramNoiseMultiplier, secureThreshold: UInt32(clamping: secureThreshold),
            secureBits: UInt32(clamping: secureBits))
    }
}

extension RoundPlan {
    package init(_ wire: RoundOpen) {
        self.init(round: wire.round, modelVersion: wire.modelVersion, deadlineMilliseconds: wire.deadlineMilliseconds,
                  minAgents: Int(wire.minAgents), hyperparameters: RoundHyperparameters(wire.hyperparameters))
    }

    package var wire: RoundOpen {
        RoundOpen(round: round, modelVersion: modelVersion, deadlineMilliseconds: deadlineMilliseconds,
                  minAgents: UInt32(clamping: minAgents), hyperparameters: hyperparameters.wire)
    }
}

extension LocalUpdate {
    package init(_ wire: UpdateSubmission) {
        self.init(round: wire.round, modelVersion: wire.modelVersion, users: Int(wire.users), clipCount: wire.clipCount,
                  values: wire.values)
    }

    package var wire: UpdateSubmission {
        UpdateSubmission(round: round, modelVersion: modelVersion, users: UInt32(clamping: users), clipCount: clipCount,
                         values: values)
    }
}

extension ModelUpdate {
    /// The aggregator's view of an update that `agentID` submitted.
    package init(_ wire: UpdateSubmission, from agentID: String) {
        self.init(agentID: agentID, round: wire.round, deltaSum: wire.values, users: Int(wire.users),
                  clipCount: wire.clipCount)
    }
}

extension EvaluationRelease {
    package init(_ wire: EvaluationReport) {
        self.init(round: wire.round, modelVersion: wire.modelVersion, users: Int(wire.users),
                  top1Hits: Int(wire.top1Hits), top10Hits: Int(wire.top10Hits), lossSum: wire.lossSum)
    }

    package var wire: EvaluationReport {
        EvaluationReport(round: round, modelVersion: modelVersion, users: UInt32(clamping: users),
                         top1Hits: UInt32(clamping: top1Hits), top10Hits: UInt32(clamping: top10Hits), lossSum: lossSum)
    }
}

extension HistogramRelease {
    package init(_ wire: DriftHistogramReport) { self.init(round: wire.round, counts: wire.counts) }
    package var wire: DriftHistogramReport { DriftHistogramReport(round: round, counts: counts) }
}

extension DemandRelease {
    package init(_ wire: DemandCountsReport) {
        self.init(round: wire.round, noiseMultiplier: wire.noiseMultiplier, shoppers: wire.shoppers, counts: wire.counts)
    }
    package var wire: DemandCountsReport {
        DemandCountsReport(round: round, noiseMultiplier: noiseMultiplier, shoppers: shoppers, counts: counts)
    }
}

extension LedgerRecord {
    package init(_ wire: LedgerReceiptMessage.Entry) {
        self.init(id: wire.id, previousHash: wire.previousHash, round: wire.round, mechanism: wire.mechanism,
                  samplingRate: wire.samplingRate, noiseMultiplier: wire.noiseMultiplier, rdp: wire.rdp,
                  epsilonAfter: wire.epsilonAfter, createdAtMilliseconds: wire.createdAtMilliseconds, hash: wire.hash,
                  signature: wire.signature)
    }

    package var wire: LedgerReceiptMessage.Entry {
        LedgerReceiptMessage.Entry(id: id, previousHash: previousHash, round: round, mechanism: mechanism,
                                   samplingRate: samplingRate, noiseMultiplier: noiseMultiplier, rdp: rdp,
                                   epsilonAfter: epsilonAfter, createdAtMilliseconds: createdAtMilliseconds, hash: hash,
                                   signature: signature)
    }
}
