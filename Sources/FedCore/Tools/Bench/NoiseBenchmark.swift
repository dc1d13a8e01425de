import FedIO
import FedLogic
package import FedModel
import Foundation

/// The cost of a release's noise: the exact discrete Gaussian on the quantised update (what agents send)
/// beside the snapped floating-point Gaussian it replaced, over the same vector, in one run.
package enum NoiseBenchmark {
    package struct Result: Sendable {
        package var parameters: Int
        package var discreteSeconds, floatingSeconds: Double
        package var jsonLine: String {
            String(format: #"{"parameters": %d, "discrete_gaussian_ms": %.1f, "snapped_float_gaussian_ms": %.1f, "#
                   + #""discrete_ns_per_coordinate": %.1f, "ratio": %.2f}"#, parameters, discreteSeconds * 1000,
                   floatingSeconds * 1000, discreteSeconds / Double(parameters) * 1e9, discreteSeconds / floatingSeconds)
        }
    }

    /// Median of `repeats` timings of each, noise multiplier 1.6 (the demo's) at S = 1.
    package static func run(shape: LSTMShape, repeats: Int) -> Result {
        let values = [Float](repeating: 0.001, count: shape.layout.count)
        func median(_ body: () -> Void) -> Double {
            var times: [Double] = []
            for _ in 0..<repeats {
                let start = ContinuousClock.now
                body()
                times.append((ContinuousClock.now - start).inSeconds)
            }
            return times.sorted()[times.count / 2]
        }
        var sink = 0.0
        let discrete = median {
            var random = SodiumStream()
            sink += Double(QuantisedRelease.noised(values, clipNorm: 1, noiseMultiplier: 1.6, random: &random)[0])
        }
        let floating = median {
            var noise = GaussianNoise(generator: SodiumStream())
            sink += Double(noise.noised(values, sigma: 1.6)[0])
        }
        if sink.isNaN { print("") }
        return Result(parameters: values.count, discreteSeconds: discrete, floatingSeconds: floating)
    }
}
