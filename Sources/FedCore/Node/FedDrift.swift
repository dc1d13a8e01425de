import FedIO

/// Facts about this build.
package enum FedDrift {
    /// The software version, reported by `--version` and sent in every hello.
    package static let version = "0.1.0"
}
