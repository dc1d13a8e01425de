import FedModel

extension Duration {
    /// The duration in seconds, as a Double (for rates and latencies in the benchmarks).
    package var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
