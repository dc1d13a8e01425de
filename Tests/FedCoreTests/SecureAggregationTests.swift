@testable import FedIO
@testable import FedLogic
@testable import FedModel
import Foundation
import Testing

@Suite("Secure aggregation: Shamir sharing, masks, and the round with dropouts and a dishonest aggregator")
struct SecureAggregationTests {
    // MARK: Shamir

    @Test("Field multiplication equals (a·b) mod (2⁶¹ − 1) computed with 128-bit division")
    func fieldArithmetic() {
        var random = SplitMix64(seed: 11)
        for _ in 0..<20_000 {
            let a = random.next() % Shamir.prime, b = random.next() % Shamir.prime
            let (high, low) = a.multipliedFullWidth(by: b)
            let expected = Shamir.prime.dividingFullWidth((high, low)).remainder
            #expect(Shamir.multiply(a, b) == expected)
        }
        for a: UInt64 in [1, 2, 12345, Shamir.prime - 1] { #expect(Shamir.multiply(a, Shamir.inverse(a)) == 1) }
    }

    @Test("Any t of n shares give the secret back; t − 1 shares are refused; a corrupted share changes or breaks it")
    func shamir() throws {
        var random = SodiumRandom()
        let secret = Sodium.randomBytes(32)
        let points: [UInt64] = [1, 2, 3, 4, 5, 6, 7]
        let shares = try Shamir.split(secret, threshold: 4, points: points, random: &random)
        for subset in [[0, 1, 2, 3], [3, 4, 5, 6], [0, 2, 4, 6], [6, 5, 1, 0]] {
            #expect(try Shamir.combine(subset.map { shares[$0] }, threshold: 4) == secret)
        }
        #expect(throws: Shamir.Failure.tooFewShares(have: 3, need: 4)) {
            try Shamir.combine(Array(shares.prefix(3)), threshold: 4)
        }
        var corrupted = Array(shares.prefix(4))
        corrupted[2].values[0] = Shamir.add(corrupted[2].values[0], 1)
        let wrong = try? Shamir.combine(corrupted, threshold: 4)
        #expect(wrong != secret)
        #expect(throws: Shamir.Failure.badPoint(3)) { try Shamir.split(secret, threshold: 2, points: [1, 3, 3], random: &random) }
        #expect(throws: Shamir.Failure.badThreshold(threshold: 4, parties: 3)) {
            try Shamir.split(secret, threshold: 4, points: [1, 2, 3], random: &random)
        }
    }

    @Test("t − 1 shares carry nothing: their values are uniform on the field whatever the secret (χ², top 8 bits)")
    func sharesAreUniform() throws {
        var random = SodiumRandom()
        let zero = [UInt8](repeating: 0, count: 32)
        var counts = [Int](repeating: 0, count: 256)
        for _ in 0..<2_000 {
            // Two shares of a threshold-3 sharing of the all-zero secret.
            let shares = try Shamir.split(zero, threshold: 3, points: [1, 2, 3], random: &random)
            for share in shares.prefix(2) { for value in share.values { counts[Int(value >> 53)] += 1 } }
        }
        #expect(ChiSquare.uniform(counts) < ChiSquare.criticalOneInAMillion(degrees: 255))
        // Control: the secret's own chunks (all zero) are as far from uniform as can be.
        var control = [Int](repeating: 0, count: 256)
        control[0] = 20_000
        #expect(ChiSquare.uniform(control) > ChiSquare.criticalOneInAMillion(degrees: 255))
    }

    // MARK: The round

    /// What happens to each party: it stops after the given step (nil: takes part to the end).
    enum Drop: Int { case beforeKeys = 0, beforeShares, beforeMaskedInput, beforeSignature, beforeResponse }

    struct Outcome {
        var sum: [UInt32]?
        var failure: SecureAggregation.Failure?
        var survivors: Set<UInt64>
    }

    /// Runs one round with honest parties 1…n; `drops[p]` makes party p go silent before that step.
    /// The agents' majority rule on t is off here, so the dropout arithmetic can be tested at the small
    /// thresholds the issue names (t − 1 … n − t dropouts need t ≤ n/2); `majorityThreshold` tests the rule.
    static func runRound(inputs: [UInt64: [UInt32]], threshold: Int, drops: [UInt64: Drop] = [:], round: UInt64 = 7) -> Outcome {
        let dimension = inputs.values.first?.count ?? 0
        var server = SecureAggregationServer(round: round, threshold: threshold, dimension: dimension)
        let clients = Dictionary(uniqueKeysWithValues: inputs.keys.map {
            ($0, SecureAggregationClient(round: round, party: $0, threshold: threshold, dimension: dimension,
                                         identity: SigningKeyPair(), requireMajority: false))
        })
        func active(_ step: Drop) -> [UInt64] {
            inputs.keys.sorted().filter { party in drops[party].map { $0.rawValue > step.rawValue } ?? true }
        }
        do {
            for party in active(.beforeKeys) { try server.receive(keys: try clients[party]!.advertise()) }
            let roster = try server.closeRoster()
            let rosterParties = Set(roster.map(\.party))
            for party in active(.beforeShares) where rosterParties.contains(party) {
                try server.receive(shares: try clients[party]!.shareKeys(roster: roster), from: party)
            }
            let forwarded = try server.closeSharing()
            for party in active(.beforeMaskedInput) where forwarded[party] != nil {
                let masked = try clients[party]!.maskedInput(inputs[party]!, shares: forwarded[party]!)
                try server.receive(maskedInput: masked, from: party)
            }
            let survivors = try server.closeMaskedInput()
            for party in active(.beforeSignature) where survivors.contains(party) {
                try server.receive(signature: try clients[party]!.signSurvivors(survivors), from: party)
            }
            let request = try server.unmaskRequest()
            for party in active(.beforeResponse) where request.signatures[party] != nil {
                try server.receive(response: try clients[party]!.unmask(request))
            }
            return Outcome(sum: try server.sum(), failure: nil, survivors: Set(survivors))
        } catch let failure as SecureAggregation.Failure {
            return Outcome(sum: nil, failure: failure, survivors: Set(server.survivorList ?? []))
        } catch {
            return Outcome(sum: nil, failure: .refused("\(error)"), survivors: [])
        }
    }

    static func inputs(parties: Int, dimension: Int, seed: UInt64) -> [UInt64: [UInt32]] {
        var random = SplitMix64(seed: seed)
        return Dictionary(uniqueKeysWithValues: (1...UInt64(parties)).map { party in
            (party, (0..<dimension).map { _ in UInt32(truncatingIfNeeded: random.next()) })
        })
    }

    static func plainSum(_ inputs: [UInt64: [UInt32]], of parties: Set<UInt64>) -> [UInt32] {
        var total = [UInt32](repeating: 0, count: inputs.values.first?.count ?? 0)
        for party in parties { for (i, word) in (inputs[party] ?? []).enumerated() { total[i] &+= word } }
        return total
    }

    @Test("An agent refuses a threshold of half the roster or less: two groups of t could sign different survivor lists")
    func majorityThreshold() throws {
        let clients = (1...UInt64(4)).map { SecureAggregationClient(round: 1, party: $0, threshold: 2, dimension: 4,
                                                                     identity: SigningKeyPair()) }
        var server = SecureAggregationServer(round: 1, threshold: 2, dimension: 4)
        for client in clients { try server.receive(keys: try client.advertise()) }
        let roster = try server.closeRoster()
        #expect(throws: SecureAggregation.Failure.refused("threshold 2 is not above half of the 4 parties")) {
            try clients[0].shareKeys(roster: roster)
        }
        // Control: the same roster with threshold 3 is accepted.
        let three = SecureAggregationClient(round: 1, party: 9, threshold: 3, dimension: 4, identity: SigningKeyPair())
        var other = SecureAggregationServer(round: 1, threshold: 3, dimension: 4)
        try other.receive(keys: try three.advertise())
        for client in clients.prefix(3) {
            let fresh = SecureAggregationClient(round: 1, party: client.party, threshold: 3, dimension: 4, identity: SigningKeyPair())
            try other.receive(keys: try fresh.advertise())
        }
        #expect(throws: Never.self) { try three.shareKeys(roster: try other.closeRoster()) }
    }

    @Test("With pinned peers an agent refuses a roster holding an identity it does not know, or one identity twice")
    func pinnedPeers() throws {
        let identities = (1...4).map { _ in SigningKeyPair() }
        func roster(_ keys: [SigningKeyPair], pinned: Set<SigningPublicKey>?) throws
            -> (SecureAggregationClient, [SecureAggregation.Keys])
        {
            let clients = keys.enumerated().map { index, identity in
                SecureAggregationClient(round: 1, party: UInt64(index + 1), threshold: 3, dimension: 4, identity: identity,
                                        peers: index == 0 ? pinned : nil)
            }
            var server = SecureAggregationServer(round: 1, threshold: 3, dimension: 4)
            for client in clients { try server.receive(keys: try client.advertise()) }
            return (clients[0], try server.closeRoster())
        }
        let pinned = Set(identities.dropFirst().prefix(2).map(\.publicKey))  // parties 2 and 3 only
        // Party 4 is a stranger to agent 1: refused.
        let (first, withStranger) = try roster(identities, pinned: pinned)
        #expect(throws: SecureAggregation.Failure.refused("party 4's identity is not one of this agent's pinned peers")) {
            try first.shareKeys(roster: withStranger)
        }
        // One real peer posing as two parties: refused.
        let (second, doubled) = try roster([identities[0], identities[1], identities[2], identities[2]],
                                           pinned: pinned)
        #expect(throws: SecureAggregation.Failure.refused("two parties of the roster have the same identity")) {
            try second.shareKeys(roster: doubled)
        }
        // Control: the pinned peers only.
        let (third, honest) = try roster(Array(identities.prefix(3)), pinned: pinned)
        #expect(throws: Never.self) { try third.shareKeys(roster: honest) }
    }

    @Test("With no dropouts the unmasked sum equals the plain sum of the inputs exactly (mod 2³², wrapping words)")
    func exactSum() {
        let inputs = Self.inputs(parties: 6, dimension: 40_000, seed: 1)
        let outcome = Self.runRound(inputs: inputs, threshold: 4)
        #expect(outcome.failure == nil)
        let exact = outcome.sum == Self.plainSum(inputs, of: Set(inputs.keys))
        #expect(exact, "the unmasked sum differs from the plain sum")
    }

    @Test("Dropouts at every step, 1, 2 and t−1 … n−t agents: the round completes with the survivors' exact sum, or aborts below t",
          arguments: [Drop.beforeKeys, .beforeShares, .beforeMaskedInput, .beforeSignature, .beforeResponse])
    func dropouts(at step: Drop) {
        let n = 10, t = 4
        let inputs = Self.inputs(parties: n, dimension: 2_000, seed: UInt64(step.rawValue) + 100)
        for dropped in [1, 2] + Array((t - 1)...(n - t)) + [n - t + 1] {
            let drops = Dictionary(uniqueKeysWithValues: (1...UInt64(dropped)).map { ($0 * 3 % UInt64(n) + 1, step) })
            let outcome = Self.runRound(inputs: inputs, threshold: t, drops: drops)
            let remaining = n - drops.count
            if remaining >= t {
                #expect(outcome.failure == nil, "\(drops.count) dropped \(step): \(String(describing: outcome.failure))")
                // Parties that dropped after sending their masked input are in the sum; earlier ones are not.
                let counted = step.rawValue >= Drop.beforeSignature.rawValue
                    ? Set(inputs.keys) : Set(inputs.keys).subtracting(drops.keys)
                #expect(outcome.survivors == counted)
                let exact = outcome.sum == Self.plainSum(inputs, of: counted)
                #expect(exact, "\(drops.count) dropped \(step): the unmasked sum differs from the plain sum")
            } else {
                #expect(outcome.sum == nil, "\(drops.count) dropped \(step): must abort below t")
                if case .tooFew = outcome.failure {} else { Issue.record("expected tooFew, got \(String(describing: outcome.failure))") }
            }
        }
    }

    /// Runs steps 0–2 honestly for n parties and returns the pieces for a dishonest step 3/4.
    static func upToMaskedInput(n: Int, t: Int, dimension: Int = 64)
        -> (server: SecureAggregationServer, clients: [UInt64: SecureAggregationClient], survivors: [UInt64])?
    {
        var server = SecureAggregationServer(round: 3, threshold: t, dimension: dimension)
        let clients = Dictionary(uniqueKeysWithValues: (1...UInt64(n)).map {
            ($0, SecureAggregationClient(round: 3, party: $0, threshold: t, dimension: dimension, identity: SigningKeyPair()))
        })
        do {
            for party in clients.keys.sorted() { try server.receive(keys: try clients[party]!.advertise()) }
            let roster = try server.closeRoster()
            for party in clients.keys.sorted() { try server.receive(shares: try clients[party]!.shareKeys(roster: roster), from: party) }
            let forwarded = try server.closeSharing()
            for party in clients.keys.sorted() {
                try server.receive(maskedInput: try clients[party]!.maskedInput([UInt32](repeating: 1, count: dimension),
                                                                               shares: forwarded[party] ?? []), from: party)
            }
            return (server, clients, try server.closeMaskedInput())
        } catch {
            Issue.record("honest steps failed: \(error)")
            return nil
        }
    }

    @Test("An aggregator that asks one agent for both a survivor's self-mask share and its mask-key share is refused")
    func doubleRequestRefused() throws {
        let (n, t) = (5, 3)
        guard let (_, clients, survivors) = Self.upToMaskedInput(n: n, t: t) else { return }
        let victim: UInt64 = 5
        // All sign the full list; the aggregator gets shares of b_5 from party 1 ...
        var signatures: [UInt64: [UInt8]] = [:]
        for party in survivors { signatures[party] = try clients[party]!.signSurvivors(survivors) }
        let first = try clients[1]!.unmask(.init(survivors: survivors, signatures: signatures))
        #expect(first.selfMaskShares[victim] != nil && first.maskKeyShares[victim] == nil)
        // ... then claims 5 dropped to get party 1's share of s_5: refused, whatever signatures it shows.
        let without = survivors.filter { $0 != victim }
        #expect(throws: SecureAggregation.Failure.refused("shares were already revealed this round")) {
            try clients[1]!.unmask(.init(survivors: without, signatures: signatures))
        }
        // A second signature for another list is refused too.
        #expect(throws: SecureAggregation.Failure.outOfOrder("sign survivors")) { try clients[2]!.signSurvivors(without) }
    }

    @Test("A split view (some agents told a survivor dropped) cannot gather t signatures for both lists, so nobody reveals")
    func splitViewRefused() throws {
        let (n, t) = (5, 3)
        guard let (_, clients, survivors) = Self.upToMaskedInput(n: n, t: t) else { return }
        let without = survivors.filter { $0 != 5 }
        // Parties 1–3 sign the full list; 4 signs the list without 5 (5 is told nothing).
        var full: [UInt64: [UInt8]] = [:], partial: [UInt64: [UInt8]] = [:]
        for party: UInt64 in [1, 2, 3] { full[party] = try clients[party]!.signSurvivors(survivors) }
        partial[4] = try clients[4]!.signSurvivors(without)
        // Party 4 sees only one valid signature of its list (signatures of the other list do not verify).
        let mixed = partial.merging(full) { mine, _ in mine }
        #expect(throws: SecureAggregation.Failure.tooFew(step: "unmask (valid signatures)", have: 1, need: 3)) {
            try clients[4]!.unmask(.init(survivors: without, signatures: mixed))
        }
        // Party 1 refuses a request for a list it did not sign.
        #expect(throws: SecureAggregation.Failure.refused("the survivor list differs from the one this agent signed")) {
            try clients[1]!.unmask(.init(survivors: without, signatures: mixed))
        }
        // Control: the honest request (the list 1–3 signed, their signatures) is answered.
        #expect(throws: Never.self) { try clients[1]!.unmask(.init(survivors: survivors, signatures: full)) }
    }

    @Test("Survivor lists an honest run never sends are refused: a party outside U2, a repeated party, fewer than t")
    func badSurvivorLists() throws {
        guard let (_, clients, _) = Self.upToMaskedInput(n: 4, t: 3) else { return }
        #expect(throws: SecureAggregation.Failure.refused("a survivor did not share keys with this agent (not in U2)")) {
            try clients[1]!.signSurvivors([1, 2, 3, 9])
        }
        #expect(throws: SecureAggregation.Failure.refused("the survivor list repeats a party")) { try clients[1]!.signSurvivors([1, 2, 2]) }
        #expect(throws: SecureAggregation.Failure.tooFew(step: "survivors", have: 2, need: 3)) { try clients[1]!.signSurvivors([1, 2]) }
    }

    @Test("The aggregator's view of one agent is uniform: every masked vector passes χ² on bytes; the plain input fails it")
    func maskedVectorsAreUniform() throws {
        // Structured inputs (small integers, as quantised updates mostly are): far from uniform.
        let dimension = 50_000
        var inputs: [UInt64: [UInt32]] = [:]
        for party in UInt64(1)...4 { inputs[party] = (0..<dimension).map { UInt32(($0 * Int(party)) % 7) } }
        var server = SecureAggregationServer(round: 1, threshold: 3, dimension: dimension)
        let clients = Dictionary(uniqueKeysWithValues: inputs.keys.map {
            ($0, SecureAggregationClient(round: 1, party: $0, threshold: 3, dimension: dimension, identity: SigningKeyPair()))
        })
        for party in inputs.keys.sorted() { try server.receive(keys: try clients[party]!.advertise()) }
        let roster = try server.closeRoster()
        for party in inputs.keys.sorted() { try server.receive(shares: try clients[party]!.shareKeys(roster: roster), from: party) }
        let forwarded = try server.closeSharing()
        for party in inputs.keys.sorted() {
            let masked = try clients[party]!.maskedInput(inputs[party]!, shares: forwarded[party] ?? [])
            #expect(ChiSquare.uniform(Self.byteCounts(masked)) < ChiSquare.criticalOneInAMillion(degrees: 255), "party \(party)")
            // Control: the same test on the unmasked input fails.
            #expect(ChiSquare.uniform(Self.byteCounts(inputs[party]!)) > ChiSquare.criticalOneInAMillion(degrees: 255))
        }
    }

    static func byteCounts(_ words: [UInt32]) -> [Int] {
        var counts = [Int](repeating: 0, count: 256)
        for word in words { for shift in stride(from: 0, to: 32, by: 8) { counts[Int((word >> UInt32(shift)) & 0xFF)] += 1 } }
        return counts
    }

    @Test("Shares boxed for one agent do not open for another, and a tampered box is refused")
    func boxes() throws {
        let a = BoxKeyPair(), b = BoxKeyPair(), c = BoxKeyPair()
        let box = MaskCrypto.seal([1, 2, 3], from: a, to: b.publicKey)
        #expect(MaskCrypto.open(box, from: a.publicKey, to: b) == [1, 2, 3])
        #expect(MaskCrypto.open(box, from: a.publicKey, to: c) == nil)
        var tampered = box
        tampered[tampered.count - 1] ^= 1
        #expect(MaskCrypto.open(tampered, from: a.publicKey, to: b) == nil)
        #expect(try MaskCrypto.pairwiseSeed(a, b.publicKey, round: 1) == MaskCrypto.pairwiseSeed(b, a.publicKey, round: 1))
        #expect(try MaskCrypto.pairwiseSeed(a, b.publicKey, round: 1) != MaskCrypto.pairwiseSeed(a, b.publicKey, round: 2))
    }
}

/// Pearson's χ² against the uniform distribution.
enum ChiSquare {
    static func uniform(_ counts: [Int]) -> Double {
        let total = Double(counts.reduce(0, +)), expected = total / Double(counts.count)
        return counts.reduce(0) { $0 + (Double($1) - expected) * (Double($1) - expected) / expected }
    }

    /// The 1 − 10⁻⁶ quantile of χ² (Wilson–Hilferty, z = 4.753424), accurate to about 1 % at these degrees of
    /// freedom. One in a million, not one in a thousand: these tests draw fresh random keys every run and check
    /// five vectors, so at 99.9 % a correct implementation failed about one suite run in 200 (seen once in a
    /// full run, χ² = 351 against 331). A broken mask is not near the line: the controls' unmasked inputs are
    /// orders of magnitude above it.
    static func criticalOneInAMillion(degrees k: Int) -> Double {
        let z = 4.753_424, a = 2 / (9 * Double(k))
        return Double(k) * pow(1 - a + z * a.squareRoot(), 3)
    }
}

@Suite("Distributed discrete Gaussian release for secure aggregation")
struct DistributedReleaseTests {
    @Test("The grid leaves room for every user's clipped contribution plus 12σ in 32-bit words; too many users is an error")
    func grid() throws {
        let release = try DistributedRelease(clipNorm: 1, noiseMultiplier: 1.6, threshold: 3, maxUsers: 15_000)
        #expect(release.bits == 16)  // ⌊31 − log₂(30,000 + 19.2 + 1)⌋
        let extent: Double = 2 * 15_000 + 12 * 1.6 + 1
        #expect(extent * Double(1 << release.bits) < 0x1p31)
        #expect(throws: DistributedRelease.Failure.tooManyUsers(5_000_000)) {
            try DistributedRelease(clipNorm: 1, noiseMultiplier: 1, threshold: 3, maxUsers: 5_000_000)
        }
        // τ of Kairouz–Liu–Steinke underflows at these variances; the accounted multiplier pays the rounding.
        #expect(release.tau == 0)
        let z = release.accountedNoiseMultiplier(dimension: 126_576)
        #expect(z < 1.6 && z > 1.6 / (1 + 126_576.0.squareRoot() / 65_536) * 0.999)
    }

    @Test("Extreme sums of every agent decode exactly through the 32-bit modular sum (no noise: within one step per agent)")
    func noWrap() throws {
        let release = try DistributedRelease(clipNorm: 2, noiseMultiplier: 0, threshold: 4, maxUsers: 1_000)
        var random = SodiumRandom()
        // 4 agents, 250 users each, every user at ±S on coordinates 0 and 1.
        let values: [Float] = [500, -500, 0.3, -0.7]
        var total = [UInt32](repeating: 0, count: values.count)
        for _ in 0..<4 { for (i, word) in release.encode(values, random: &random).enumerated() { total[i] &+= word } }
        let decoded = release.decode(total)
        for (value, sum) in zip(values, decoded) { #expect(abs(Double(sum) - 4 * Double(value)) <= 4 * release.step) }
    }

    @Test("t agents' shares sum to the whole noise σ² (variance within 3 %), unbiased; agents adding the whole σ² each would give t×")
    func distributedVariance() throws {
        let release = try DistributedRelease(clipNorm: 1, noiseMultiplier: 0.001, threshold: 3, maxUsers: 10)
        var random = SodiumRandom()
        let count = 40_000
        var total = [UInt32](repeating: 0, count: count)
        for _ in 0..<release.threshold {
            for (i, word) in release.encode([Float](repeating: 0, count: count), random: &random).enumerated() { total[i] &+= word }
        }
        let steps = release.decode(total).map { Double($0) / release.step }
        let mean = steps.reduce(0, +) / Double(count)
        let variance = steps.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(count - 1)
        let sigma = 0.001 * Double(1 << release.bits)
        #expect(abs(variance / (sigma * sigma) - 1) < 0.03, "variance \(variance) vs σ² \(sigma * sigma)")
        #expect(abs(mean) < 4 * sigma / Double(count).squareRoot())
        #expect(release.sumVariance >= sigma * sigma)
        // Control: the full σ² at every agent is t× what the sum needs, and the test above would see it.
        #expect(Double(release.threshold) * release.sumVariance / (sigma * sigma) > 2.5)
    }

    @Test("Through the secure-aggregation round, the decoded sum is the agents' float sum (no noise: within one step per agent)")
    func throughSecureAggregation() throws {
        let release = try DistributedRelease(clipNorm: 1, noiseMultiplier: 0, threshold: 3, maxUsers: 100)
        var random = SodiumRandom()
        let vectors: [[Float]] = (0..<4).map { agent in (0..<500).map { Float(sin(Double($0 * (agent + 1)))) * 10 } }
        let inputs = Dictionary(uniqueKeysWithValues: vectors.enumerated().map {
            (UInt64($0.offset + 1), release.encode($0.element, random: &random))
        })
        let outcome = SecureAggregationTests.runRound(inputs: inputs, threshold: 3)
        let sum = try #require(outcome.sum)
        let decoded = release.decode(sum)
        for i in 0..<500 {
            let expected = vectors.reduce(0) { $0 + Double($1[i]) }
            #expect(abs(Double(decoded[i]) - expected) <= 4 * release.step)
        }
    }
}
