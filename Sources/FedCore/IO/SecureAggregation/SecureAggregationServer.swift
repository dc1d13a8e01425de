/// The aggregator's side of one secure-aggregation round (``SecureAggregation``): it collects each
/// step, closes it (the caller decides when: enough agents, or the step's deadline), and finally
/// removes the masks. It never holds an agent's input, only masked vectors and, after step 4, the
/// seeds and keys that cancel the masks of the sum.
package struct SecureAggregationServer: Sendable {
    package let round: UInt64
    package let threshold: Int
    package let dimension: Int

    private var keys: [UInt64: SecureAggregation.Keys] = [:]
    private var roster: [UInt64: SecureAggregation.Keys]?
    private var sealedShares: [UInt64: [SecureAggregation.SealedShares]] = [:]
    private var sharers: Set<UInt64>?
    private var masked: [UInt64: [UInt32]] = [:]
    private var survivors: [UInt64]?
    private var signatures: [UInt64: [UInt8]] = [:]
    private var responses: [UInt64: SecureAggregation.UnmaskResponse] = [:]

    package init(round: UInt64, threshold: Int, dimension: Int) {
        precondition(threshold >= 1 && dimension >= 0)
        (self.round, self.threshold, self.dimension) = (round, threshold, dimension)
    }

    // MARK: Step 0

    package mutating func receive(keys advertised: SecureAggregation.Keys) throws(SecureAggregation.Failure) {
        guard roster == nil else { throw .outOfOrder("keys after the roster closed") }
        guard keys[advertised.party] == nil else { throw .duplicate(advertised.party) }
        guard advertised.verify(round: round) else { throw .badSignature(advertised.party) }
        keys[advertised.party] = advertised
    }

    /// Closes step 0: the roster U1 every agent receives.
    package mutating func closeRoster() throws(SecureAggregation.Failure) -> [SecureAggregation.Keys] {
        guard roster == nil else { throw .outOfOrder("roster closed twice") }
        guard keys.count >= threshold else { throw .tooFew(step: "keys", have: keys.count, need: threshold) }
        roster = keys
        return keys.keys.sorted().compactMap { keys[$0] }
    }

    // MARK: Step 1

    package mutating func receive(shares: [SecureAggregation.SealedShares], from party: UInt64) throws(SecureAggregation.Failure) {
        guard let roster, sharers == nil else { throw .outOfOrder("shares") }
        guard roster[party] != nil else { throw .unknownParty(party) }
        guard sealedShares[party] == nil else { throw .duplicate(party) }
        let recipients = shares.map(\.to)
        guard shares.allSatisfy({ $0.from == party }), Set(recipients) == Set(roster.keys).subtracting([party]),
              recipients.count == roster.count - 1
        else { throw .badShares(from: party) }
        sealedShares[party] = shares
    }

    /// Closes step 1 (U2) and returns, for each agent of U2, the boxes addressed to it by U2.
    package mutating func closeSharing() throws(SecureAggregation.Failure) -> [UInt64: [SecureAggregation.SealedShares]] {
        guard roster != nil, sharers == nil else { throw .outOfOrder("sharing closed") }
        guard sealedShares.count >= threshold else { throw .tooFew(step: "shares", have: sealedShares.count, need: threshold) }
        let sharers = Set(sealedShares.keys)
        self.sharers = sharers
        var forwarded: [UInt64: [SecureAggregation.SealedShares]] = [:]
        for party in sharers { forwarded[party] = [] }
        for box in sealedShares.values.joined() where sharers.contains(box.to) { forwarded[box.to, default: []].append(box) }
        sealedShares = [:]
        return forwarded
    }

    // MARK: Step 2

    package mutating func receive(maskedInput words: [UInt32], from party: UInt64) throws(SecureAggregation.Failure) {
        guard let sharers, survivors == nil else { throw .outOfOrder("masked input") }
        guard sharers.contains(party) else { throw .unknownParty(party) }
        guard masked[party] == nil else { throw .duplicate(party) }
        guard words.count == dimension else { throw .wrongDimension(party: party, count: words.count, expected: dimension) }
        masked[party] = words
    }

    /// Closes step 2: U3, the list each survivor is asked to sign.
    package mutating func closeMaskedInput() throws(SecureAggregation.Failure) -> [UInt64] {
        guard sharers != nil, survivors == nil else { throw .outOfOrder("masked input closed") }
        guard masked.count >= threshold else { throw .tooFew(step: "masked input", have: masked.count, need: threshold) }
        let list = masked.keys.sorted()
        survivors = list
        return list
    }

    // MARK: Step 3

    package mutating func receive(signature: [UInt8], from party: UInt64) throws(SecureAggregation.Failure) {
        guard let survivors, let roster, responses.isEmpty else { throw .outOfOrder("signature") }
        guard survivors.contains(party), let identity = roster[party]?.identity else { throw .unknownParty(party) }
        guard signatures[party] == nil else { throw .duplicate(party) }
        guard identity.verify(signature: signature, of: SecureAggregation.survivorsBytes(round: round, survivors)) else {
            throw .badSignature(party)
        }
        signatures[party] = signature
    }

    /// Closes step 3: the request every survivor that signed receives.
    package func unmaskRequest() throws(SecureAggregation.Failure) -> SecureAggregation.UnmaskRequest {
        guard let survivors else { throw .outOfOrder("unmask request") }
        guard signatures.count >= threshold else { throw .tooFew(step: "signatures", have: signatures.count, need: threshold) }
        return SecureAggregation.UnmaskRequest(survivors: survivors, signatures: signatures)
    }

    // MARK: Step 4

    package mutating func receive(response: SecureAggregation.UnmaskResponse) throws(SecureAggregation.Failure) {
        guard let survivors, let sharers, signatures.count >= threshold else { throw .outOfOrder("unmask response") }
        guard signatures[response.party] != nil else { throw .unknownParty(response.party) }
        guard responses[response.party] == nil else { throw .duplicate(response.party) }
        let alive = Set(survivors)
        guard Set(response.selfMaskShares.keys).isSubset(of: alive),
              Set(response.maskKeyShares.keys).isSubset(of: sharers.subtracting(alive)),
              (response.selfMaskShares.values.map(\.x) + response.maskKeyShares.values.map(\.x)).allSatisfy({ $0 == response.party })
        else { throw .badShares(from: response.party) }
        responses[response.party] = response
    }

    /// Σ_{u ∈ U3} x_u mod 2³², from any t responses.
    package func sum() throws(SecureAggregation.Failure) -> [UInt32] {
        guard let survivors, let sharers, let roster else { throw .outOfOrder("sum") }
        guard responses.count >= threshold else { throw .tooFew(step: "unmask responses", have: responses.count, need: threshold) }
        var total = [UInt32](repeating: 0, count: dimension)
        for party in survivors {
            guard let words = masked[party] else { continue }
            total.withUnsafeMutableBufferPointer { sum in
                words.withUnsafeBufferPointer { for i in 0..<$0.count { sum[i] &+= $0[i] } }
            }
        }
        // The same responders' shares for every secret, so the Lagrange weights are computed once.
        let responders = responses.keys.sorted().compactMap { responses[$0] }
        var reconstructor = Shamir.Reconstructor(threshold: threshold)
        // Self masks of the survivors.
        for v in survivors {
            var seed: [UInt8]
            do { seed = try reconstructor.combine(responders.compactMap { $0.selfMaskShares[v] }) }
            catch { throw .reconstruction(party: v, error) }
            MaskCrypto.applyMask(seed: seed, stream: SecureAggregation.selfStream, sign: -1, to: &total)
            Sodium.wipe(&seed)
        }
        // Pairwise masks between survivors and the agents that dropped after sharing.
        for v in sharers.subtracting(survivors).sorted() {
            guard let advertised = roster[v] else { continue }
            var secret: [UInt8]
            do { secret = try reconstructor.combine(responders.compactMap { $0.maskKeyShares[v] }) }
            catch { throw .reconstruction(party: v, error) }
            let dropped: BoxKeyPair
            do { dropped = BoxKeyPair(secret: try SecretBytes(wiping: &secret, expectedCount: BoxKeyPair.secretByteCount)) }
            catch { throw .reconstruction(party: v, .inconsistent) }
            guard dropped.publicKey == advertised.maskKey else { throw .reconstruction(party: v, .inconsistent) }
            for u in survivors {
                guard let theirs = roster[u] else { continue }
                var seed: [UInt8]
                do { seed = try MaskCrypto.pairwiseSeed(dropped, theirs.maskKey, round: round) } catch { throw .weakKey(u) }
                // u added pairSign(u, v)·PRG; remove it.
                MaskCrypto.applyMask(seed: seed, stream: SecureAggregation.pairwiseStream,
                                     sign: -SecureAggregation.pairSign(u, v), to: &total)
                Sodium.wipe(&seed)
            }
        }
        return total
    }

    /// The survivors U3 (after step 2 closed).
    package var survivorList: [UInt64]? { survivors }
}
