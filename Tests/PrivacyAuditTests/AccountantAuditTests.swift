@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

/// Audit 1: FedDrift's accountant reproduces Google's dp-accounting 0.6.0
/// (`../shared/reference/dp_accounting_vectors.json`, tolerances from its DP_README.md).
///
/// FedDrift computes fractional orders with the exact signed series (``RDP/FractionalSeries/exact``);
/// it is compared with the `*_signed_frac` columns and with the mpmath integral. The dp-accounting
/// variant (every term positive) is also implemented and compared with the library's own columns,
/// which shows both computations are the published ones.
@Suite("Audit 1: the accountant equals the reference vectors")
struct AccountantAuditTests {
    static let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("shared/reference/dp_accounting_vectors.json")
    static let present = FileManager.default.fileExists(atPath: file.path)

    static func vectors() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any] ?? [:]
    }

    static func close(_ value: Double, _ reference: Double, relative: Double, absolute: Double = 0) -> Bool {
        if reference.isInfinite || value.isInfinite { return value == reference }
        return abs(value - reference) <= relative * abs(reference) + absolute
    }

    /// JSON null is +∞.
    static func numbers(_ any: Any?) -> [Double] {
        (any as? [Any] ?? []).map { ($0 as? NSNumber)?.doubleValue ?? .infinity }
    }

    @Test("The default orders are dp-accounting's 156 orders", .enabled(if: present, "skipped: reference vectors absent"))
    func orders() throws {
        #expect(RDP.defaultOrders == Self.numbers(try Self.vectors()["default_orders"]))
    }

    @Test("Per-order RDP of one round: integer orders rel 1e-6 + abs 1e-12; fractional orders vs the signed series and vs dp-accounting, nulls stay null",
          .enabled(if: present, "skipped: reference vectors absent"))
    func perOrder() throws {
        let rows = try Self.vectors()["rdp_per_order_single_step"] as? [[String: Any]] ?? []
        #expect(rows.count >= 30)
        var compared = 0
        for row in rows {
            let q = (row["q"] as? Double) ?? 0, z = (row["z"] as? Double) ?? 0
            let library = Self.numbers(row["rdp"]), signed = Self.numbers(row["rdp_signed_frac"])
            let exact = RDP.subsampledGaussian(q: q, noiseMultiplier: z, series: .exact)
            let upper = RDP.subsampledGaussian(q: q, noiseMultiplier: z, series: .dpAccounting)
            for index in RDP.defaultOrders.indices {
                #expect(Self.close(exact[index], signed[index], relative: 1e-6, absolute: 1e-12),
                        "q \(q) z \(z) order \(RDP.defaultOrders[index]): \(exact[index]) vs \(signed[index])")
                #expect(Self.close(upper[index], library[index], relative: 1e-6, absolute: 1e-12),
                        "dp-accounting variant q \(q) z \(z) order \(RDP.defaultOrders[index]): \(upper[index]) vs \(library[index])")
                compared += 1
            }
        }
        #expect(compared == rows.count * 156)
    }

    @Test("Fractional and integer orders equal the numerically integrated Rényi moment (mpmath, 40 digits)",
          .enabled(if: present, "skipped: reference vectors absent"))
    func integral() throws {
        for row in try Self.vectors()["independent_rdp_check"] as? [[String: Any]] ?? [] {
            let q = row["q"] as? Double ?? 0, z = row["z"] as? Double ?? 0, order = row["order"] as? Double ?? 2
            let truth = row["rdp_integral_mpmath"] as? Double ?? 0
            let value = RDP.subsampledGaussian(q: q, noiseMultiplier: z, order: order)
            if row["rdp_signed_frac"] is NSNull {
                // The series did not converge within 1000 terms: the order is excluded (+∞), as in the reference.
                #expect(value == .infinity, "q \(q) z \(z) α \(order)")
            } else {
                #expect(Self.close(value, truth, relative: 1e-6, absolute: 1e-12), "q \(q) z \(z) α \(order)")
            }
        }
    }

    @Test("ε over the 540-row grid (rounds × δ): rel 1e-6 against both columns, classic conversion too",
          .enabled(if: present, "skipped: reference vectors absent"))
    func grid() throws {
        let rows = try Self.vectors()["rdp_grid"] as? [[String: Any]] ?? []
        #expect(rows.count == 540)
        var cache: [String: ([Double], [Double])] = [:]
        for row in rows {
            let q = row["q"] as? Double ?? 0, z = row["z"] as? Double ?? 0
            let steps = Double(row["steps"] as? Int ?? 0), delta = row["delta"] as? Double ?? 0
            let key = "\(q)-\(z)"
            let (exact, upper) = cache[key] ?? (RDP.subsampledGaussian(q: q, noiseMultiplier: z, series: .exact),
                                                RDP.subsampledGaussian(q: q, noiseMultiplier: z, series: .dpAccounting))
            cache[key] = (exact, upper)
            let signedEpsilon = RDP.epsilon(rdp: exact.map { $0 * steps }, delta: delta).epsilon
            let libraryEpsilon = RDP.epsilon(rdp: upper.map { $0 * steps }, delta: delta).epsilon
            let classic = RDP.epsilonClassic(rdp: upper.map { $0 * steps }, delta: delta).epsilon
            #expect(Self.close(signedEpsilon, row["eps_signed_frac"] as? Double ?? .nan, relative: 1e-6), "\(row)")
            #expect(Self.close(libraryEpsilon, row["eps"] as? Double ?? .nan, relative: 1e-6), "\(row)")
            #expect(Self.close(classic, row["eps_classic"] as? Double ?? .nan, relative: 1e-6), "\(row)")
        }
    }

    @Test("Calibration finds the smallest z within 1e-4 of dp-accounting's and never exceeds the target ε",
          .enabled(if: present, "skipped: reference vectors absent"))
    func calibration() throws {
        let table = try Self.vectors()["calibration"] as? [String: Any]
        for row in table?["rows"] as? [[String: Any]] ?? [] {
            let target = row["target_eps"] as? Double ?? 0, delta = row["delta"] as? Double ?? 0
            let q = row["q"] as? Double ?? 0, steps = row["steps"] as? Int ?? 0
            let reference = row["z_calibrated"] as? Double ?? 0
            let z = try #require(RDP.calibrate(q: q, rounds: steps, delta: delta, targetEpsilon: target,
                                               series: .dpAccounting))
            #expect(abs(z - reference) <= 1e-4 * max(1, reference), "target \(target) q \(q) steps \(steps): \(z) vs \(reference)")
            #expect(RDP.epsilon(q: q, noiseMultiplier: z, rounds: steps, delta: delta, series: .dpAccounting).epsilon <= target)
            // FedDrift's own (exact) series is tighter, so it never needs more noise.
            let ours = try #require(RDP.calibrate(q: q, rounds: steps, delta: delta, targetEpsilon: target))
            #expect(ours <= z + 1e-6)
        }
    }

    @Test("Drift-score histograms: the Gaussian mechanism's RDP, composed over releases, matches the reference",
          .enabled(if: present, "skipped: reference vectors absent"))
    func histogram() throws {
        let table = try Self.vectors()["histogram"] as? [String: Any]
        for row in table?["rows"] as? [[String: Any]] ?? [] where row["noise"] as? String == "gaussian" {
            let sigma = row["sigma"] as? Double ?? 0, releases = Double(row["releases"] as? Int ?? 0)
            let delta = row["delta"] as? Double ?? 0
            let rdp = RDP.defaultOrders.map { RDP.gaussian(noiseMultiplier: sigma, order: $0) * releases }
            #expect(Self.close(RDP.epsilon(rdp: rdp, delta: delta).epsilon, row["eps_rdp"] as? Double ?? .nan,
                               relative: 1e-6), "\(row)")
        }
    }

    @Test("q = 1 is the plain Gaussian mechanism; q = 0 releases nothing")
    func identities() {
        for order in [1.5, 2, 7.3, 64] {
            #expect(RDP.subsampledGaussian(q: 1, noiseMultiplier: 1.3, order: order) == order / (2 * 1.3 * 1.3))
            #expect(RDP.subsampledGaussian(q: 0, noiseMultiplier: 1.3, order: order) == 0)
        }
    }
}
