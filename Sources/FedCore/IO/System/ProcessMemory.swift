internal import CMalloc
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The process's resident memory and the machine's, from `/proc` and the cgroup.
package enum ProcessMemory {
    /// The fixed mmap threshold (``fixAllocatorThresholds()``): glibc's own default starting value.
    package static let mmapThresholdBytes: Int32 = 128 << 10

    /// Keeps a long-running process's resident memory flat under glibc's allocator.
    ///
    /// glibc serves allocations above `M_MMAP_THRESHOLD` with their own `mmap`, returned to the kernel on
    /// `free`, but by default it *raises* that threshold to the size of each such block freed (up to 32 MiB).
    /// A round's model-sized buffers (the received model, gradients, the sealed update, each a few MiB) are
    /// freed once, so every later round's buffers come from the per-thread arenas instead, where freed
    /// space is reused only by allocations that fit it. Setting the threshold explicitly turns the
    /// adjustment off (mallopt(3)); an operator's own `MALLOC_MMAP_THRESHOLD_` in the environment wins.
    /// Measured in docs/EVALUATION.md ("Soak"). Returns whether it applied.
    @discardableResult
    package static func fixAllocatorThresholds() -> Bool {
        guard ProcessInfo.processInfo.environment["MALLOC_MMAP_THRESHOLD_"] == nil else { return false }
        return mallopt(M_MMAP_THRESHOLD, mmapThresholdBytes) == 1
    }

    /// Resident set size in bytes (`/proc/self/statm`, second field × page size); nil where unreadable.
    package static func residentBytes() -> Int? {
        let fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 128)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        let fields = buffer[..<count].split(separator: UInt8(ascii: " "))
        guard fields.count > 1, let pages = Int(String(decoding: fields[1], as: UTF8.self)) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// The memory this process may use: the machine's, or its cgroup's limit when lower (containers).
    package static func availableBytes() -> Int {
        var bytes = Int(ProcessInfo.processInfo.physicalMemory)
        for path in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
            if let text = try? String(contentsOfFile: path, encoding: .utf8),
               let limit = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), limit > 0 {
                bytes = min(bytes, limit)
            }
        }
        return bytes
    }

    /// `memory_limit_mib` when absent: half of ``availableBytes()``.
    package static var defaultLimitMiB: Int { max(256, (availableBytes() / 2) >> 20) }

    /// Gives the allocator's free pages back to the kernel (glibc `malloc_trim`, which also releases whole
    /// free pages inside each thread's arena). Called once a round by both binaries, after the round's
    /// model-sized buffers were freed: freed space that later allocations do not fit would otherwise stay
    /// resident, and a long run's memory creep (scripts/soak) with it. A few milliseconds at most.
    package static func releaseFreeMemory() {
        _ = malloc_trim(0)
    }
}

