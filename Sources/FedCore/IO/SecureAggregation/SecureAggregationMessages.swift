/// The messages of one secure-aggregation round (Bonawitz et al. 2017, "Practical Secure Aggregation
/// for Privacy-Preserving Machine Learning", with its consistency check). Parties are numbered
/// 1, 2, … within the round (the Shamir evaluation points); every message travels between an agent and
/// the aggregator over the sealed, signed, CURVE-protected link.
///
/// 0. Each agent advertises two fresh X25519 public keys, signed with its identity key: one to encrypt
///    shares (c), one to agree pairwise masks (s).
/// 1. Given the roster U1 (≥ t agents), each agent Shamir-shares (t of |U1|) its s secret key and a
///    fresh self-mask seed b, and boxes party v's shares to v under c. U2: the agents whose shares came.
/// 2. Each agent in U2 sends y = x + PRG(b) ± Σ_{v ∈ U2} PRG(s-agreement with v) mod 2³².
///    U3: the agents whose masked input came (≥ t).
/// 3. Each agent in U3 signs the list U3; it signs one list per round.
/// 4. Shown ≥ t signatures of the same U3, each agent returns its shares of b_v for v ∈ U3 and of
///    s_v for v ∈ U2 \ U3 — never both for one v. The aggregator rebuilds the secrets from any t
///    responses, removes the masks, and learns Σ_{u ∈ U3} x_u and nothing else.
package enum SecureAggregation {
    /// Step 0: an agent's public keys for this round.
    package struct Keys: Sendable, Equatable {
        package var party: UInt64
        package var encryptionKey: BoxPublicKey
        package var maskKey: BoxPublicKey
        package var identity: SigningPublicKey
        /// The identity key's signature of (round, party, both keys).
        package var signature: [UInt8]

        package init(party: UInt64, encryptionKey: BoxPublicKey, maskKey: BoxPublicKey, identity: SigningPublicKey,
                     signature: [UInt8]) {
            (self.party, self.encryptionKey, self.maskKey) = (party, encryptionKey, maskKey)
            (self.identity, self.signature) = (identity, signature)
        }

        static func signedBytes(round: UInt64, party: UInt64, encryptionKey: BoxPublicKey, maskKey: BoxPublicKey) -> [UInt8] {
            var writer = ByteWriter(capacity: 96)
            writer.write(raw: "FedDrift secagg keys v1".utf8)
            writer.write(round)
            writer.write(party)
            writer.write(raw: encryptionKey.bytes)
            writer.write(raw: maskKey.bytes)
            return writer.bytes
        }

        func verify(round: UInt64) -> Bool {
            identity.verify(signature: signature, of: Self.signedBytes(round: round, party: party,
                                                                     encryptionKey: encryptionKey, maskKey: maskKey))
        }
    }

    /// Step 1: shares boxed by `from` for `to` (the aggregator forwards it unread).
    package struct SealedShares: Sendable, Equatable {
        package var from: UInt64
        package var to: UInt64
        package var box: [UInt8]

        package init(from: UInt64, to: UInt64, box: [UInt8]) {
            (self.from, self.to, self.box) = (from, to, box)
        }
    }

    /// Step 4, the aggregator's side: the survivors and their signatures of that list.
    package struct UnmaskRequest: Sendable, Equatable {
        package var survivors: [UInt64]
        package var signatures: [UInt64: [UInt8]]

        package init(survivors: [UInt64], signatures: [UInt64: [UInt8]]) {
            (self.survivors, self.signatures) = (survivors, signatures)
        }
    }

    /// Step 4, an agent's answer: its shares of the survivors' self-mask seeds and of the dropped
    /// agents' mask keys.
    package struct UnmaskResponse: Sendable, Equatable {
        package var party: UInt64
        package var selfMaskShares: [UInt64: Shamir.Share]
        package var maskKeyShares: [UInt64: Shamir.Share]

        package init(party: UInt64, selfMaskShares: [UInt64: Shamir.Share], maskKeyShares: [UInt64: Shamir.Share]) {
            (self.party, self.selfMaskShares, self.maskKeyShares) = (party, selfMaskShares, maskKeyShares)
        }
    }

    /// Why a step was refused. Each names the party or the rule, never key bytes.
    package enum Failure: Error, Equatable, CustomStringConvertible {
        case outOfOrder(String)
        case tooFew(step: String, have: Int, need: Int)
        case unknownParty(UInt64)
        case duplicate(UInt64)
        case badSignature(UInt64)
        case badShares(from: UInt64)
        case wrongDimension(party: UInt64, count: Int, expected: Int)
        /// The aggregator asked for something an honest run never asks: the reason says what.
        case refused(String)
        case reconstruction(party: UInt64, Shamir.Failure)
        case weakKey(UInt64)

        package var description: String {
            switch self {
            case let .outOfOrder(step): "secure aggregation: \(step) out of order"
            case let .tooFew(step, have, need): "secure aggregation: \(have) agents at \(step), \(need) needed (the threshold)"
            case let .unknownParty(party): "secure aggregation: party \(party) is not in this round"
            case let .duplicate(party): "secure aggregation: party \(party) sent this step twice"
            case let .badSignature(party): "secure aggregation: party \(party)'s signature does not verify"
            case let .badShares(party): "secure aggregation: the shares from party \(party) do not open"
            case let .wrongDimension(party, count, expected): "secure aggregation: party \(party) sent \(count) words, expected \(expected)"
            case let .refused(reason): "secure aggregation: refused: \(reason)"
            case let .reconstruction(party, failure): "secure aggregation: party \(party)'s secret: \(failure)"
            case let .weakKey(party): "secure aggregation: party \(party)'s mask key is invalid"
            }
        }
    }

    /// The bytes each survivor signs at step 3.
    static func survivorsBytes(round: UInt64, _ survivors: [UInt64]) -> [UInt8] {
        var writer = ByteWriter(capacity: 40 + 8 * survivors.count)
        writer.write(raw: "FedDrift secagg survivors v1".utf8)
        writer.write(round)
        for survivor in survivors.sorted() { writer.write(survivor) }
        return writer.bytes
    }

    /// Party `u`'s sign for its pairwise mask with `v`: the lower index adds, the higher subtracts, so
    /// the two cancel in the sum.
    static func pairSign(_ u: UInt64, _ v: UInt64) -> Int { u < v ? 1 : -1 }

    /// Stream nonces: pairwise masks and self masks never share a keystream.
    static let pairwiseStream: UInt8 = 1
    static let selfStream: UInt8 = 2

}
