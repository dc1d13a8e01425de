// swift-tools-version:6.1
import PackageDescription

/// Every Swift target builds in Swift 6 mode with strict concurrency and the upcoming features
/// the style guide relies on: `internal import` by default keeps CZMQ/CSodium out of FedCore's
/// package API, so no C type can leak above the Transport and Crypto layers.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// The model layer's numerics are written for AVX2 + FMA (x86-64-v3: every x86 server CPU since 2013 and
/// this project's machines); measured, the LSTM scoring step is several times faster than with
/// baseline SSE2 code generation. Set FEDDRIFT_TARGET_CPU=x86-64 to build for older CPUs.
var modelSettings = strictSettings
#if arch(x86_64)
let targetCPU = Context.environment["FEDDRIFT_TARGET_CPU"] ?? "haswell"
modelSettings.append(.unsafeFlags(["-target-cpu", targetCPU]))
#endif
/// Debug builds (the test suite) still optimise the model layer: its loops are the LSTM's inner kernels, and
/// unoptimised they make every federation-sized test several times slower while adding nothing to debug.
modelSettings.append(.unsafeFlags(["-O"], .when(configuration: .debug)))

let package = Package(
    name: "FedDrift",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "edge-agent", targets: ["EdgeAgent"]),
        .executable(name: "aggregator", targets: ["Aggregator"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // The edge agent's local event store: SQLite in WAL mode with migrations.
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        // Operators' HTTP endpoints (/healthz, /metrics, /status): Hummingbird on SwiftNIO, and the
        // Prometheus exposition format through swift-metrics, the server ecosystem's standard pair.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // Alert e-mail: SMTP on SwiftNIO (already built for Hummingbird), with STARTTLS through
        // swift-nio-ssl, so that alerts naming shoppers never cross a network in clear.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // The highly available aggregator's shared state (checkpoint, leader lease with fencing tokens): PostgreSQL
        // through postgres-nio, the server ecosystem's PostgreSQL client on SwiftNIO. Optional at run time: nothing
        // connects to a database unless the aggregator's configuration has a `postgres` section.
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        .systemLibrary(name: "CZMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),
        // Matrix products of the LSTM (sgemm/dgemm); only FedCore/Numerics imports it.
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        // glibc's allocator controls (<malloc.h>: mallopt, malloc_trim), header only; FedCore/IO/System uses it
        // to keep long-running processes' memory flat (ProcessMemory).
        .systemLibrary(name: "CMalloc"),
        // librdkafka: Kafka ingestion for sharded regions (consumer groups), and its mock cluster for tests and
        // benchmarks; only FedCore/IO/Kafka imports it. Kafka is optional at run time: nothing connects to a
        // broker unless an agent's configuration has a `kafka` section.
        .systemLibrary(name: "CRdKafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"])]),
        // FedCore's layers, bottom up (docs/ARCHITECTURE.md). Each is a target, so the compiler rejects
        // an import that runs back up; scripts/check-layers also rejects C modules outside their layer.
        //
        // I/O layer: Transport (the only libzmq user), Crypto (the only libsodium user), Kafka (the only
        // librdkafka user), the wire codec and System (the process's memory). The only C and unsafe code besides the model layer's kernels.
        .target(
            name: "FedIO",
            dependencies: ["CZMQ", "CSodium", "CMalloc", "CRdKafka"],
            path: "Sources/FedCore/IO",
            swiftSettings: strictSettings
        ),
        // Model layer: Numerics + the LSTM. The only OpenBLAS user and the only target built with
        // -target-cpu (AVX2/FMA), so crypto and transport keep the compiler's portable code.
        .target(
            name: "FedModel",
            dependencies: ["COpenBLAS"],
            path: "Sources/FedCore/Model",
            swiftSettings: modelSettings
        ),
        // Logic layer: events, privacy mechanisms and the accountant, drift detection, recommendation,
        // aggregation, local training, and the protocol state machines. Plain Sendable values in and
        // out: no sockets, no SQLite, no ciphertext, so its tests drive it with arrays.
        .target(
            name: "FedLogic",
            dependencies: ["FedModel"],
            path: "Sources/FedCore/Logic",
            swiftSettings: strictSettings
        ),
        // Node layer: durable stores (GRDB), configuration (Yams), and the actors and services that move
        // values between the I/O layer and the logic layer; the wire ↔ domain mapping is its gate.
        .target(
            name: "FedNode",
            dependencies: [
                "FedIO",
                "FedLogic",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            path: "Sources/FedCore/Node",
            swiftSettings: strictSettings
        ),
        // Tools: benchmarks, the shopper and federation simulators and the drift evaluation, used by the
        // bench / simulate / evaluate commands. Not production code paths.
        .target(
            name: "FedTools",
            dependencies: ["FedNode", .product(name: "Logging", package: "swift-log")],
            path: "Sources/FedCore/Tools",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "EdgeAgent",
            dependencies: [
                "FedIO", "FedModel", "FedLogic", "FedNode", "FedTools",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "Aggregator",
            dependencies: [
                "FedIO", "FedModel", "FedLogic", "FedNode", "FedTools",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "FedCoreTests",
            dependencies: [
                "FedIO", "FedModel", "FedLogic", "FedNode", "FedTools", "TestSupport", "FuzzHarnesses",
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["Fixtures"],  // golden files, read by path
            swiftSettings: strictSettings
        ),
        // Starts the real binaries on 127.0.0.1 for the process-level test suites; the canary audit
        // harness (test-only code, kept out of the production library).
        .target(
            name: "TestSupport",
            dependencies: ["FedIO", "FedModel", "FedLogic", "FedNode", "FedTools"],
            path: "Tests/TestSupport",
            swiftSettings: strictSettings
        ),
        // The fuzzing harnesses (Tests/Fuzz): the test suite replays their committed corpus; scripts/fuzz
        // runs them under libFuzzer.
        .target(
            name: "FuzzHarnesses",
            dependencies: ["FedIO", "FedModel", "FedLogic", "FedNode"],
            path: "Tests/Fuzz/Harnesses",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["FedIO", "FedModel", "FedLogic", "FedNode", "FedTools", "TestSupport"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "PrivacyAuditTests",
            dependencies: ["FedIO", "FedModel", "FedLogic", "FedNode", "FedTools", "TestSupport",
                // Audit 9 edits ledger rows directly, as an attacker with the file would.
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            exclude: ["Fixtures"],  // dp-accounting reference values and their generator, read by path
            swiftSettings: strictSettings
        ),
    ]
)

// scripts/fuzz only: the libFuzzer driver, which links against libFuzzer (-sanitize=fuzzer) and so cannot
// be part of an ordinary build.
if Context.environment["FEDDRIFT_FUZZ"] != nil {
    package.products.append(.executable(name: "feddrift-fuzz", targets: ["FuzzDriver"]))
    package.targets.append(.target(name: "CFuzzer", path: "Tests/Fuzz/CFuzzer"))
    package.targets.append(.executableTarget(
        name: "FuzzDriver", dependencies: ["FuzzHarnesses", "CFuzzer"], path: "Tests/Fuzz/Driver",
        swiftSettings: strictSettings))
}
