@testable import FedNode
import Foundation
import Synchronization
import Testing

@Suite("Progress: a redrawn bar on a terminal, a plain line every 10 s elsewhere, never one line per item")
struct ProgressReporterTests {
    @Test("Plain mode: at most one line per 10 s of (fake) time, then a final line, with count, %, rate and ETA")
    func plainLines() {
        let screen = Screen(), clock = FakeClock()
        let progress = ProgressReporter(label: "simulating", total: 1_000, unit: "shoppers", output: screen.write,
                                        isTerminal: false, clock: clock.now)
        for _ in 0..<1_000 {                                       // 10 shoppers/s for 100 s
            clock.advance(by: .milliseconds(100))
            progress.advance()
        }
        progress.finish()
        let lines = screen.lines
        #expect(lines.count == 9 + 1)                              // at 10 s, 20 s, … 90 s, then the final line
        #expect(lines[8] == "simulating: 900/1000 shoppers (90.0%), 10.0 shoppers/s, ETA 10s")
        #expect(!screen.text.contains("\r"))
        #expect(lines.first == "simulating: 100/1000 shoppers (10.0%), 10.0 shoppers/s, ETA 1m30s")
        #expect(lines.last == "simulating: 1000/1000 shoppers (100.0%), 10.0 shoppers/s, done in 1m40s")
    }

    @Test("Plain mode: 100,000 advances within 1 s print the final line only")
    func notOneLinePerItem() {
        let screen = Screen(), clock = FakeClock()
        let progress = ProgressReporter(label: "reading", total: 100_000, unit: "rows", output: screen.write,
                                        isTerminal: false, clock: clock.now)
        for _ in 0..<100_000 {
            clock.advance(by: .microseconds(10))
            progress.advance()
        }
        progress.finish()
        #expect(screen.lines.count <= 2)
        #expect(screen.lines.last == "reading: 100000/100000 rows (100.0%), 100k rows/s, done in 1s")
    }

    @Test("Terminal mode: redrawn with \\r at most 10 times a second, one newline at the end")
    func terminalBar() {
        let screen = Screen(), clock = FakeClock()
        let progress = ProgressReporter(label: "rounds", total: 50, unit: "rounds", output: screen.write,
                                        isTerminal: true, clock: clock.now)
        for _ in 0..<50 {                                          // 20 ms a round: 1 s in all
            clock.advance(by: .milliseconds(20))
            progress.advance()
        }
        progress.finish()
        let text = screen.text
        let frames = text.split(separator: "\r", omittingEmptySubsequences: true)
        #expect(frames.count <= 1 + 10 + 1)                        // the first frame, ≤ 10 redraws, the final one
        #expect(frames.count >= 5)
        #expect(text.filter { $0 == "\n" }.count == 1 && text.hasSuffix("\n"))
        #expect(text.hasPrefix("\rrounds [....................] 0/50 rounds 0.0% ? rounds/s ETA ?"))
        #expect(frames.last == "rounds [####################] 50/50 rounds 100.0% 50.0 rounds/s done in 1s\n")
        let halfway = frames.first { $0.contains(" 25/50 ") }
        #expect(halfway?.hasPrefix("rounds [##########..........] 25/50 rounds 50.0% 50.0 rounds/s ETA 1s") == true)
    }

    @Test("Terminal mode: a note goes on its own line above the bar, which is redrawn below it")
    func noteAboveBar() {
        let screen = Screen(), clock = FakeClock()
        let progress = ProgressReporter(label: "rounds", total: 10, unit: "rounds", output: screen.write,
                                        isTerminal: true, clock: clock.now)
        clock.advance(by: .seconds(1))
        progress.advance()
        progress.note("  round 1: HR@10 0.1234")
        progress.finish()
        let lines = screen.text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 3)                                  // the note, the final bar, "" after the newline
        #expect(lines[0].hasSuffix("\r  round 1: HR@10 0.1234"))
        #expect(lines[0].split(separator: "\r").dropLast().allSatisfy {
            $0.hasPrefix("rounds [") || $0.allSatisfy(\.isWhitespace)
        })
        #expect(lines[1].hasPrefix("\rrounds [##.................."))
        #expect(lines[2].isEmpty)
    }

    @Test("Plain mode: notes and the lines of successive phases, and nothing between phases but notes")
    func phases() {
        let screen = Screen(), clock = FakeClock()
        let progress = ProgressReporter(output: screen.write, isTerminal: false, clock: clock.now)
        progress.advance(by: 5)                                    // idle: ignored
        progress.note("loading")
        progress.begin("pass 1", total: 4, unit: "candidates")
        clock.advance(by: .seconds(2))
        progress.advance(by: 4)
        progress.begin("pass 2", total: 4, unit: "candidates")     // finishes pass 1
        clock.advance(by: .seconds(4))
        progress.advance(by: 2)
        progress.finish()
        progress.finish()                                          // idle: nothing more
        #expect(screen.lines == [
            "loading",
            "pass 1: 4/4 candidates (100.0%), 2.00 candidates/s, done in 2s",
            "pass 2: 2/4 candidates (50.0%), 0.500 candidates/s, done in 4s",
        ])
    }

    @Test("Stopped (failed) work: no final line; on a terminal a newline ends the bar's line")
    func stop() {
        let screen = Screen(), clock = FakeClock()
        let bar = ProgressReporter(label: "importing", total: 100, unit: .bytes, output: screen.write, isTerminal: true,
                                   clock: clock.now)
        clock.advance(by: .seconds(1))
        bar.set(40)
        bar.stop()
        bar.finish()                                               // stopped: nothing more
        #expect(screen.text.hasSuffix("\n") && screen.text.filter { $0 == "\n" }.count == 1)
        #expect(!screen.text.contains("done"))
        let plain = Screen()
        let lines = ProgressReporter(label: "importing", total: 100, unit: .bytes, output: plain.write,
                                     isTerminal: false, clock: clock.now)
        lines.set(40)
        lines.stop()
        #expect(plain.text.isEmpty)
    }

    @Test("Unknown total: count and rate only, in both modes")
    func unknownTotal() {
        let screen = Screen(), clock = FakeClock()
        let plain = ProgressReporter(label: "scanning", total: nil, unit: "rows", output: screen.write,
                                     isTerminal: false, clock: clock.now)
        clock.advance(by: .seconds(10))
        plain.set(2_500)
        clock.advance(by: .seconds(10))
        plain.set(5_000)
        plain.finish()
        #expect(screen.lines == ["scanning: 2500 rows, 250 rows/s, 10s so far",
                                 "scanning: 5000 rows, 250 rows/s, 20s so far",
                                 "scanning: 5000 rows, 250 rows/s, done in 20s"])
        #expect(!screen.text.contains("%") && !screen.text.contains("ETA"))
        #expect(ProgressReporter.barLine("scanning", completed: 5_000, total: nil, unit: "rows", elapsed: .seconds(20),
                                         final: false) == "scanning 5000 rows 250 rows/s 20s")
    }

    @Test("Rate and ETA: '?' before the first item; bytes in kB/MB/GB; durations in s, m and h")
    func formatting() {
        #expect(ProgressReporter.plainLine("x", completed: 0, total: 10, unit: "rounds", elapsed: .seconds(30),
                                           final: false) == "x: 0/10 rounds (0.0%), ? rounds/s, ETA ?")
        #expect(ProgressReporter.plainLine("read a.csv", completed: 25_000_000, total: 100_000_000, unit: .bytes,
                                           elapsed: .seconds(5), final: false)
                == "read a.csv: 25.0/100.0 MB (25.0%), 5.0 MB/s, ETA 15s")
        #expect(ProgressReporter.plainLine("x", completed: 1, total: 7_201, unit: "rounds", elapsed: .seconds(3),
                                           final: false) == "x: 1/7201 rounds (0.0%), 0.333 rounds/s, ETA 6h00m")
        #expect(ProgressReporter.duration(185) == "3m05s" && ProgressReporter.duration(.infinity) == "?")
        #expect(ProgressReporter.compact(3_456_789) == "3.5M")
        // A total of 0 (an empty file) is complete, not a division by zero.
        #expect(ProgressReporter.plainLine("x", completed: 0, total: 0, unit: .bytes, elapsed: .zero, final: true)
                == "x: 0.0/0.0 kB (100.0%), ? B/s, done in 0s")
    }

    @Test("NO_COLOR and TERM=dumb ask for plain lines")
    func environment() {
        #expect(ProgressReporter.wantsRedraw(environment: ["TERM": "xterm-256color"]))
        #expect(ProgressReporter.wantsRedraw(environment: ["TERM": "xterm", "NO_COLOR": ""]))
        #expect(!ProgressReporter.wantsRedraw(environment: ["TERM": "xterm", "NO_COLOR": "1"]))
        #expect(!ProgressReporter.wantsRedraw(environment: ["TERM": "dumb"]))
    }

    @Test("Advances from several threads are all counted")
    func concurrentAdvances() async {
        let screen = Screen()
        let progress = ProgressReporter(label: "work", total: 8_000, unit: "items", output: screen.write,
                                        isTerminal: false)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 { group.addTask { for _ in 0..<1_000 { progress.advance() } } }
        }
        progress.finish()
        #expect(screen.lines.last?.hasPrefix("work: 8000/8000 items (100.0%)") == true)
    }
}

/// What a reporter wrote, in order.
private final class Screen: Sendable {
    private let written = Mutex("")
    var write: @Sendable (String) -> Void { { text in self.written.withLock { $0 += text } } }
    var text: String { written.withLock { $0 } }
    var lines: [String] { text.split(separator: "\n").map(String.init) }
}

/// Time that moves only when a test moves it.
private final class FakeClock: Sendable {
    private let elapsed = Mutex(Duration.zero)
    var now: @Sendable () -> Duration { { self.elapsed.withLock { $0 } } }
    func advance(by step: Duration) { elapsed.withLock { $0 += step } }
}
