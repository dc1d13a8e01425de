import FedIO
import FedLogic
import FedModel
package import FedNode
import Foundation

/// `aggregator simulate --agents N`: what one round costs the aggregator at N agents, in this process and without
/// sockets, through the code a real round runs — each agent's update (noise-like values of the model's size)
/// encoded and sealed as an agent does, each sealed message opened by the ``AggregatorGate`` (authenticated
/// decryption, signature, round binding, decoding) and accepted by the ``RoundCoordinator`` (verification; it holds
/// the update until the round closes), then the close (FedAvg over N updates and the server step) and the model
/// file every agent downloads. What it leaves out is stated in the result: transport, receipts, training.
package struct RoundCostSimulation: Sendable {
    package struct Result: Sendable, Codable {
        package var agents: Int
        package var model: String
        package var parameters: Int
        package var rounds: Int
        /// Per update, medians over the rounds of each round's mean: an agent's encoding and sealing; the
        /// aggregator's opening, decoding, verifying and accepting.
        package var agentSealMicroseconds: Double
        package var aggregatorUpdateMicroseconds: Double
        /// Per round (median): closing (average of N updates, server optimizer step) and encoding the model file.
        package var closeMilliseconds: Double
        package var modelEncodeMilliseconds: Double
        /// The aggregator's work for one round on one core: N × per update + close + model encoding.
        package var aggregatorRoundMilliseconds: Double
        /// Bytes: one sealed update, one model download; their totals for the round (N of each).
        package var updateBytes: Int
        package var modelBytes: Int
        /// Resident memory the N held updates added before the close (the process's growth), in MiB.
        package var heldMiB: Double

        enum CodingKeys: String, CodingKey {
            case agents, model, parameters, rounds
            case agentSealMicroseconds = "agent_seal_us", aggregatorUpdateMicroseconds = "aggregator_update_us"
            case closeMilliseconds = "close_ms", modelEncodeMilliseconds = "model_encode_ms"
            case aggregatorRoundMilliseconds = "aggregator_round_ms", updateBytes = "update_bytes"
            case modelBytes = "model_bytes", heldMiB = "held_mib"
        }
    }

    package var agents: Int
    package var preset: String
    package var rounds: Int

    package init(agents: Int, preset: String, rounds: Int) {
        (self.agents, self.preset, self.rounds) = (agents, preset, rounds)
    }

    package func run(progress: (String) -> Void = { _ in }) async throws -> Result {
        guard let shape = LSTMShape.preset(named: preset) else {
            throw ConfigError.invalidValue(key: "--model", value: preset, reason: "must be small or medium")
        }
        let parameters = LSTMParameters<Float>(shape: shape, seed: 1)
        let count = parameters.values.count
        let aggregator = NodeIdentity()
        progress("making \(agents) agent identities …")
        let identities = (0..<agents).map { _ in NodeIdentity() }
        let ids = (0..<agents).map { "agent-\($0 + 1)" }
        var enrolled: [String: NodePublicIdentity] = [:]
        for (id, identity) in zip(ids, identities) { enrolled[id] = identity.publicIdentity }
        let gate = AggregatorGate(aggregatorID: "aggregator", identity: aggregator, agents: enrolled)
        let sealers = zip(ids, identities).map { EnvelopeSealer(identity: $1, senderID: $0, recipient: aggregator.box.publicKey) }
        let coordinator = RoundCoordinator(
            parameters: parameters.values, round: 0, enrolled: Set(ids), minAgents: 1, maxUpdateNorm: 1e9,
            averaging: FederatedAveraging(denominator: .fixed(Double(agents) * 100)))
        let header = WireHeader(kind: .update).bytes
        var seal: [Double] = [], accept: [Double] = [], close: [Double] = [], encode: [Double] = [], held: [Double] = []
        var updateBytes = 0, modelBytes = 0
        var random = SplitMix64(seed: 7)
        var values = [Float](repeating: 0, count: count)
        for round in 1...rounds {
            let opened = await coordinator.open(deadline: .now + .seconds(3_600))
            let before = ProcessMemory.residentBytes() ?? 0
            var sealTime = Duration.zero, acceptTime = Duration.zero
            for (index, sealer) in sealers.enumerated() {
                // What an agent releases is mostly noise: values of that size, made outside the timings.
                for i in 0..<count { values[i] = Float(Int64(bitPattern: random.next() >> 11) - (1 << 52)) * 0x1p-55 }
                let started = ContinuousClock.now
                let payload = LocalUpdate(round: opened, modelVersion: 0, users: 100, values: values).wire.encoded()
                let sealed = try sealer.seal(payload, kind: MessageKind.update.rawValue, round: opened)
                let sealedAt = ContinuousClock.now
                let message = ZMQMessage(parts: [ByteBlock(copying: [UInt8(index & 0xff)]), ByteBlock(copying: header), sealed],
                                         userID: ids[index])
                guard case .success(let request) = gate.open(message, openRound: opened),
                      case .update(let submission) = request.body else {
                    throw BenchmarkFailure(description: "the gate refused a well-formed update")
                }
                try await coordinator.accept(ModelUpdate(submission, from: ids[index]))
                acceptTime += ContinuousClock.now - sealedAt
                sealTime += sealedAt - started
                updateBytes = sealed.count
            }
            held.append(Double((ProcessMemory.residentBytes() ?? 0) - before) / 1_048_576)
            let closing = ContinuousClock.now
            _ = await coordinator.closeWithEvaluation()
            let closed = ContinuousClock.now
            let file = ModelFile.encode(LSTMParameters(shape: shape, values: await coordinator.parameters),
                                        modelVersion: await coordinator.modelVersion)
            encode.append((ContinuousClock.now - closed).inSeconds * 1000)
            close.append((closed - closing).inSeconds * 1000)
            modelBytes = file.count
            seal.append(sealTime.inSeconds * 1e6 / Double(agents))
            accept.append(acceptTime.inSeconds * 1e6 / Double(agents))
            ProcessMemory.releaseFreeMemory()
            progress(String(format: "round %d of %d: %.0f µs per update at the aggregator, close %.0f ms", round, rounds,
                            accept.last ?? 0, close.last ?? 0))
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        let perUpdate = median(accept), closeMs = median(close), encodeMs = median(encode)
        return Result(agents: agents, model: preset, parameters: count, rounds: rounds,
                      agentSealMicroseconds: median(seal), aggregatorUpdateMicroseconds: perUpdate,
                      closeMilliseconds: closeMs, modelEncodeMilliseconds: encodeMs,
                      aggregatorRoundMilliseconds: perUpdate * Double(agents) / 1000 + closeMs + encodeMs,
                      updateBytes: updateBytes, modelBytes: modelBytes, heldMiB: held.max() ?? 0)
    }
}
