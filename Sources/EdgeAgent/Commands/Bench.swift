import ArgumentParser
import FedCore

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure this node (release builds only give meaningful numbers).",
        subcommands: [BenchTransport.self]
    )
}

struct BenchTransport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transport",
        abstract: "DEALER→ROUTER throughput on loopback: raw, CURVE, sealed envelope, sealed + CURVE.",
        discussion: "Sizes 64 KiB and 4 MiB, all in one run, so the ratios compare like with like."
    )

    @Flag(name: .long, help: "One JSON object per line and size.")
    var json = false

    @Option(name: .long, help: "Bytes moved per variant and size (default 1 GiB).")
    var bytes: Int = 1 << 30

    @Option(name: .long, parsing: .upToNextOption, help: "Message sizes in bytes (default 65536 4194304).")
    var size: [Int] = [64 << 10, 4 << 20]

    func validate() throws {
        guard size.allSatisfy({ $0 > 0 && $0 <= 256 << 20 }) else {
            throw ValidationError("--size takes sizes from 1 byte to 256 MiB")
        }
        guard bytes > 0 else { throw ValidationError("--bytes must be positive") }
    }

    func run() async throws {
        let results = try await TransportBenchmark(bytesPerVariant: bytes, sizes: size).run { progress in
            if !json { print(progress) }
        }
        for result in results { print(json ? result.jsonLine : result.table) }
    }
}
