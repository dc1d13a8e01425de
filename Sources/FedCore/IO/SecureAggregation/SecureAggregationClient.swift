/// An agent's side of one secure-aggregation round (``SecureAggregation``). Steps must come in order;
/// each can run once. Fresh keys and seeds every round: revealing a dropped agent's mask key reveals
/// nothing about another round. Not thread-safe: one round worker owns it.
package final class SecureAggregationClient {
    package let round: UInt64
    package let party: UInt64
    package let threshold: Int
    package let dimension: Int
    private let identity: SigningKeyPair
    private let encryptionKeys = BoxKeyPair()
    private let maskKeys = BoxKeyPair()
    private var selfMaskSeed = Sodium.randomBytes(MaskCrypto.seedByteCount)

    private enum Step { case fresh, advertised, shared, masked, signed, revealed }
    private var step = Step.fresh
    private var roster: [UInt64: SecureAggregation.Keys] = [:]
    /// U2 as this agent saw it: the parties whose shares reached it (and itself).
    private var sharers: Set<UInt64> = []
    /// Shares held for other parties (and its own): v → (share of s_v, share of b_v).
    private var held: [UInt64: (maskKey: Shamir.Share, selfMask: Shamir.Share)] = [:]
    private var signedSurvivors: [UInt64]?
    /// A share box's plaintext: sender, recipient and round, then the two shares' field values.
    static let sharePlaintextBytes = 8 * (3 + 2 * Shamir.chunkCount)

    /// Refuse a threshold of half the roster or less (see ``shareKeys(roster:)``). Agents always do;
    /// off only for tests of the protocol's dropout arithmetic at small thresholds.
    private let requireMajority: Bool
    /// The federation's other enrolled agents' identity keys, when the agent's operator pinned them:
    /// every party of the roster must be one of them (or this agent), each at most once, so the
    /// aggregator cannot make up parties. nil: the roster's identities are taken as the aggregator sends them.
    private let peers: Set<SigningPublicKey>?

    package init(round: UInt64, party: UInt64, threshold: Int, dimension: Int, identity: SigningKeyPair,
                 requireMajority: Bool = true, peers: Set<SigningPublicKey>? = nil) {
        precondition(party >= 1 && threshold >= 1 && dimension >= 0)
        self.requireMajority = requireMajority
        self.peers = peers
        (self.round, self.party, self.threshold, self.dimension, self.identity) = (round, party, threshold, dimension, identity)
    }

    deinit {
        Sodium.wipe(&selfMaskSeed)
        wipeHeldShares()
    }

    /// Zeroes every share held for other parties (each removed first, so its storage is not shared).
    private func wipeHeldShares() {
        for party in Array(held.keys) {
            guard var pair = held.removeValue(forKey: party) else { continue }
            for index in pair.maskKey.values.indices { pair.maskKey.values[index] = 0 }
            for index in pair.selfMask.values.indices { pair.selfMask.values[index] = 0 }
        }
    }

    /// Step 0: this round's public keys, signed.
    package func advertise() throws(SecureAggregation.Failure) -> SecureAggregation.Keys {
        guard step == .fresh else { throw .outOfOrder("advertise") }
        step = .advertised
        let message = SecureAggregation.Keys.signedBytes(round: round, party: party, encryptionKey: encryptionKeys.publicKey,
                                                         maskKey: maskKeys.publicKey)
        let signature = message.withUnsafeBytes { identity.sign($0) }
        return SecureAggregation.Keys(party: party, encryptionKey: encryptionKeys.publicKey, maskKey: maskKeys.publicKey,
                                      identity: identity.publicKey, signature: signature)
    }

    /// Step 1: given the roster, shares of the mask key and the self-mask seed, boxed for each other party.
    package func shareKeys(roster keys: [SecureAggregation.Keys]) throws(SecureAggregation.Failure)
        -> [SecureAggregation.SealedShares]
    {
        guard step == .advertised else { throw .outOfOrder("share keys") }
        var roster: [UInt64: SecureAggregation.Keys] = [:]
        for key in keys {
            guard roster[key.party] == nil else { throw .duplicate(key.party) }
            guard key.verify(round: round) else { throw .badSignature(key.party) }
            roster[key.party] = key
        }
        guard roster[party]?.encryptionKey == encryptionKeys.publicKey, roster[party]?.maskKey == maskKeys.publicKey else {
            throw .refused("the roster does not carry this agent's own keys")
        }
        if let peers {
            // One party per enrolled identity, and no identity the operator did not pin.
            guard Set(roster.values.map(\.identity)).count == roster.count else {
                throw .refused("two parties of the roster have the same identity")
            }
            for key in roster.values where key.identity != identity.publicKey && !peers.contains(key.identity) {
                throw .refused("party \(key.party)'s identity is not one of this agent's pinned peers")
            }
        }
        // Distinct keys per party: a repeated key would let one agent's masks cancel another's.
        guard Set(roster.values.map(\.maskKey)).count == roster.count else { throw .refused("two parties share a mask key") }
        guard roster.count >= threshold else { throw .tooFew(step: "share keys", have: roster.count, need: threshold) }
        // A threshold above half the roster: two disjoint groups of t agents cannot both exist, so an
        // aggregator that shows different survivor lists cannot gather t signatures for each.
        guard !requireMajority || 2 * threshold > roster.count else {
            throw .refused("threshold \(threshold) is not above half of the \(roster.count) parties")
        }
        self.roster = roster
        step = .shared
        let points = roster.keys.sorted()
        var random = SodiumRandom()
        var secret = maskKeys.secretKey.withUnsafeBytes { Array($0) }
        defer { Sodium.wipe(&secret) }
        let keyShares: [Shamir.Share], seedShares: [Shamir.Share]
        do {
            keyShares = try Shamir.split(secret, threshold: threshold, points: points, random: &random)
            seedShares = try Shamir.split(selfMaskSeed, threshold: threshold, points: points, random: &random)
        } catch {
            throw .refused("\(error)")
        }
        var sealed: [SecureAggregation.SealedShares] = []
        for (keyShare, seedShare) in zip(keyShares, seedShares) {
            let v = keyShare.x
            if v == party {
                held[party] = (keyShare, seedShare)
                continue
            }
            guard let recipient = roster[v] else { continue }
            var writer = ByteWriter(capacity: Self.sharePlaintextBytes)
            for word in [party, v, round] + keyShare.values + seedShare.values { writer.write(word) }
            var plaintext = writer.bytes
            sealed.append(.init(from: party, to: v, box: MaskCrypto.seal(plaintext, from: encryptionKeys, to: recipient.encryptionKey)))
            Sodium.wipe(&plaintext)
        }
        return sealed
    }

    /// Step 2: opens the shares the aggregator forwarded (their senders are U2) and masks `input`.
    package func maskedInput(_ input: [UInt32], shares: [SecureAggregation.SealedShares]) throws(SecureAggregation.Failure)
        -> [UInt32]
    {
        guard step == .shared else { throw .outOfOrder("masked input") }
        guard input.count == dimension else { throw .wrongDimension(party: party, count: input.count, expected: dimension) }
        var sharers: Set<UInt64> = [party]
        for sealed in shares {
            guard sealed.to == party, let sender = roster[sealed.from] else { throw .unknownParty(sealed.from) }
            guard sharers.insert(sealed.from).inserted else { throw .duplicate(sealed.from) }
            guard var plaintext = MaskCrypto.open(sealed.box, from: sender.encryptionKey, to: encryptionKeys),
                  plaintext.count == Self.sharePlaintextBytes
            else { throw .badShares(from: sealed.from) }
            defer { Sodium.wipe(&plaintext) }
            var words = plaintext.withUnsafeBytes { raw in
                var reader = ByteReader(raw)
                // Cannot fail: the length was checked above.
                return (0..<(Self.sharePlaintextBytes / 8)).map { _ in (try? reader.read(UInt64.self, field: "share")) ?? 0 }
            }
            defer { for index in words.indices { words[index] = 0 } }
            guard words[0] == sealed.from, words[1] == party, words[2] == round else { throw .badShares(from: sealed.from) }
            let values = Array(words[3...])
            held[sealed.from] = (Shamir.Share(x: party, values: Array(values[0..<Shamir.chunkCount])),
                                 Shamir.Share(x: party, values: Array(values[Shamir.chunkCount...])))
        }
        guard sharers.count >= threshold else { throw .tooFew(step: "masked input", have: sharers.count, need: threshold) }
        self.sharers = sharers
        step = .masked
        var masked = input
        MaskCrypto.applyMask(seed: selfMaskSeed, stream: SecureAggregation.selfStream, sign: 1, to: &masked)
        for v in sharers where v != party {
            guard let theirs = roster[v] else { continue }
            var seed: [UInt8]
            do { seed = try MaskCrypto.pairwiseSeed(maskKeys, theirs.maskKey, round: round) } catch { throw .weakKey(v) }
            MaskCrypto.applyMask(seed: seed, stream: SecureAggregation.pairwiseStream,
                                 sign: SecureAggregation.pairSign(party, v), to: &masked)
            Sodium.wipe(&seed)
        }
        return masked
    }

    /// Step 3: signs the survivor list U3, once per round.
    package func signSurvivors(_ survivors: [UInt64]) throws(SecureAggregation.Failure) -> [UInt8] {
        guard step == .masked else { throw .outOfOrder("sign survivors") }
        let list = survivors.sorted()
        guard Set(list).count == list.count else { throw .refused("the survivor list repeats a party") }
        guard list.contains(party) else { throw .refused("this agent is not among the survivors it is asked to sign") }
        guard list.allSatisfy(sharers.contains) else {
            throw .refused("a survivor did not share keys with this agent (not in U2)")
        }
        guard list.count >= threshold else { throw .tooFew(step: "survivors", have: list.count, need: threshold) }
        step = .signed
        signedSurvivors = list
        return SecureAggregation.survivorsBytes(round: round, list).withUnsafeBytes { identity.sign($0) }
    }

    /// Step 4: shown ≥ t survivors' signatures of the list this agent signed, its shares of the
    /// survivors' self-mask seeds and of the dropped parties' mask keys. A second request, or one for
    /// another list, is refused: no party's self-mask seed and mask key can both be revealed.
    package func unmask(_ request: SecureAggregation.UnmaskRequest) throws(SecureAggregation.Failure)
        -> SecureAggregation.UnmaskResponse
    {
        guard step == .signed, let list = signedSurvivors else {
            throw step == .revealed ? .refused("shares were already revealed this round") : .outOfOrder("unmask")
        }
        guard request.survivors.sorted() == list else {
            throw .refused("the survivor list differs from the one this agent signed")
        }
        let message = SecureAggregation.survivorsBytes(round: round, list)
        let valid = list.filter { survivor in
            guard let signature = request.signatures[survivor], let key = roster[survivor]?.identity else { return false }
            return key.verify(signature: signature, of: message)
        }
        guard valid.count >= threshold else { throw .tooFew(step: "unmask (valid signatures)", have: valid.count, need: threshold) }
        step = .revealed
        let survivors = Set(list)
        var selfMaskShares: [UInt64: Shamir.Share] = [:], maskKeyShares: [UInt64: Shamir.Share] = [:]
        for v in sharers {
            guard let shares = held[v] else { continue }
            if survivors.contains(v) { selfMaskShares[v] = shares.selfMask } else { maskKeyShares[v] = shares.maskKey }
        }
        wipeHeldShares()
        return SecureAggregation.UnmaskResponse(party: party, selfMaskShares: selfMaskShares, maskKeyShares: maskKeyShares)
    }
}
