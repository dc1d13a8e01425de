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

/// FedCore's numerics are written for AVX2 + FMA (x86-64-v3: every x86 server CPU since 2013 and
/// this project's machines); measured, the LSTM scoring step is several times faster than with
/// baseline SSE2 code generation. Set FEDDRIFT_TARGET_CPU=x86-64 to build for older CPUs.
var numericsSettings = strictSettings
#if arch(x86_64)
let targetCPU = Context.environment["FEDDRIFT_TARGET_CPU"] ?? "haswell"
numericsSettings.append(.unsafeFlags(["-target-cpu", targetCPU]))
#endif

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
    ],
    targets: [
        .systemLibrary(name: "CZMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),
        // Matrix products of the LSTM (sgemm/dgemm); only FedCore/Numerics imports it.
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .target(
            name: "FedCore",
            dependencies: [
                "CZMQ",
                "CSodium",
                "COpenBLAS",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: numericsSettings
        ),
        .executableTarget(
            name: "EdgeAgent",
            dependencies: [
                "FedCore",
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
                "FedCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "FedCoreTests",
            dependencies: ["FedCore", .product(name: "Logging", package: "swift-log")],
            exclude: ["Fixtures"],  // golden files, read by path
            swiftSettings: strictSettings
        ),
        // Starts the real binaries on 127.0.0.1 for the process-level test suites.
        .target(
            name: "TestSupport",
            path: "Tests/TestSupport",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["FedCore", "TestSupport"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "PrivacyAuditTests",
            dependencies: ["FedCore", "TestSupport"],
            swiftSettings: strictSettings
        ),
    ]
)
