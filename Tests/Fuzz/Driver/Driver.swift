// The libFuzzer driver, built only by scripts/fuzz (FEDDRIFT_FUZZ=1 adds this target; every module is
// compiled with -sanitize=fuzzer,address). SwiftPM links an executable's entry point as
// FuzzDriver_main, which hands the command line to libFuzzer with the harness named by
// FEDDRIFT_FUZZ_HARNESS (wire, envelope, csv, jsonl, config, model).
import CFuzzer
import Foundation
import FuzzHarnesses

nonisolated(unsafe) private var harness = FuzzHarness.wire

@_cdecl("FuzzDriver_main")
public func fuzzDriverMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    let name = ProcessInfo.processInfo.environment["FEDDRIFT_FUZZ_HARNESS"] ?? ""
    guard let chosen = FuzzHarness(rawValue: name) else {
        let names = FuzzHarness.allCases.map(\.rawValue).joined(separator: ", ")
        FileHandle.standardError.write(Data("FEDDRIFT_FUZZ_HARNESS must be one of: \(names)\n".utf8))
        return 2
    }
    harness = chosen
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in
        harness.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
        return 0
    }
}
