import FedIO
import FedLogic
import Synchronization

/// An edge agent's part in one round's secure aggregation: its ``SecureAggregationClient`` (fresh keys
/// and seeds for the round), behind a lock so the one expensive step — expanding the masks over the
/// whole update — can run on a dedicated thread while the session's loop waits. Every step maps a
/// message from the aggregator to the agent's answer; the client refuses steps out of order, twice,
/// or with fewer than the threshold of agents.
final class SecureParticipant: Sendable {
    let round: UInt64
    let party: UInt64
    private let client: Mutex<SecureAggregationClient>
    private let arrived = Atomic(false)

    /// Whether the aggregator forwarded the other parties' shares (this agent is in U2 and can send).
    var sharesArrived: Bool {
        get { arrived.load(ordering: .acquiring) }
        set { arrived.store(newValue, ordering: .releasing) }
    }

    init(round: UInt64, party: UInt64, threshold: Int, dimension: Int, identity: SigningKeyPair,
         peers: Set<SigningPublicKey>? = nil) {
        (self.round, self.party) = (round, party)
        client = Mutex(SecureAggregationClient(round: round, party: party, threshold: threshold, dimension: dimension,
                                               identity: identity, peers: peers))
    }

    /// Step 0: the round's public keys.
    func advertise() throws(SecureAggregation.Failure) -> SecureKeysMessage {
        let keys = try client.withLock { (client) throws(SecureAggregation.Failure) in try client.advertise() }
        return SecureKeysMessage(round: round, keys: keys)
    }

    /// Step 1: shares for every party of the roster.
    func share(_ roster: SecureRosterMessage) throws(SecureAggregation.Failure) -> SecureSharesMessage {
        let boxes = try client.withLock { (client) throws(SecureAggregation.Failure) in
            try client.shareKeys(roster: roster.roster)
        }
        return SecureSharesMessage(round: round, shares: boxes)
    }

    /// Step 2: the masked update. CPU-bound (one keystream per party over the update): call it off the
    /// cooperative pool. `input` is wiped once masked.
    func mask(_ input: SecretWords, shares: [SecureAggregation.SealedShares], users: Int,
              clipCount: Double) throws(SecureAggregation.Failure) -> SecureMaskedInputMessage {
        defer { input.wipe() }
        let words = try input.read { (plain) throws(SecureAggregation.Failure) in
            try client.withLock { (client) throws(SecureAggregation.Failure) in
                try client.maskedInput(plain, shares: shares)
            }
        }
        return SecureMaskedInputMessage(round: round, party: party, users: UInt32(clamping: users), clipCount: clipCount,
                                        words: words)
    }

    /// Step 3: the signature of the survivor list.
    func sign(_ survivors: SecureSurvivorsMessage) throws(SecureAggregation.Failure) -> SecureSignatureMessage {
        let signature = try client.withLock { (client) throws(SecureAggregation.Failure) in
            try client.signSurvivors(survivors.survivors)
        }
        return SecureSignatureMessage(round: round, party: party, signature: signature)
    }

    /// Step 4: the shares that unmask the survivors' sum (once per round).
    func unmask(_ request: SecureUnmaskRequestMessage) throws(SecureAggregation.Failure) -> SecureUnmaskResponseMessage {
        let response = try client.withLock { (client) throws(SecureAggregation.Failure) in
            try client.unmask(request.request)
        }
        return SecureUnmaskResponseMessage(round: round, response: response)
    }
}
