import FedLogic
import Foundation
import Synchronization

/// Progress of a long command on stderr: on a terminal one bar redrawn in place, elsewhere (CI logs,
/// pipes) a plain line now and then — never one line per item, so a log stays readable and stdout
/// stays free for the command's results (several commands print JSON there).
///
/// A command does its work in phases (read a file, simulate shoppers, train, run the rounds); each
/// phase is ``begin(_:total:unit:)`` … ``advance(by:)`` / ``set(_:)`` … ``finish()`` (or ``stop()`` when
/// the work failed). Between phases the reporter is idle and draws nothing. ``note(_:)`` prints a line
/// of its own (a round's HR@10, a summary) above the bar, so informative lines and the bar do not
/// garble each other.
///
/// - On a terminal: `label [#####.......] 1200/5000 shoppers 24.0% 310 shoppers/s ETA 12s`, redrawn
///   with `\r` at most every ``terminalInterval``, ended by a newline when the phase finishes.
/// - Otherwise: `label: 1200/5000 shoppers (24.0%), 310 shoppers/s, ETA 12s`, at most every
///   ``plainInterval`` and once more, with `done in`, when the phase finishes.
///
/// The rate is the phase's average so far (items done over the time since `begin`), and the ETA the
/// remaining items at that rate: `?` until at least one item is done. A phase without a total shows
/// the count and the rate only.
///
/// Work may advance the reporter from several threads: its state is a few words behind a `Mutex`,
/// held to count and to format a line; the line is written after the lock is released (a frame drawn
/// by one thread can land just after a newer one by another; the next redraw corrects it).
package final class ProgressReporter: Sendable {
    /// What is counted: a plural noun (`"shoppers"`), or ``bytes``, shown in kB/MB/GB.
    package struct Unit: Sendable, Equatable, ExpressibleByStringLiteral {
        package var name: String
        package var isBytes = false

        package init(_ name: String) { self.name = name }
        package init(stringLiteral name: String) { self.name = name }

        package static let bytes: Unit = { var unit = Unit("bytes"); unit.isBytes = true; return unit }()
    }

    /// Least time between two redraws of the bar on a terminal.
    package static let terminalInterval = Duration.milliseconds(100)
    /// Least time between two plain progress lines (no terminal).
    package static let plainInterval = Duration.seconds(10)
    /// Columns of the bar itself.
    static let barWidth = 20

    private struct Phase {
        var label: String
        var total: Int?
        var unit: Unit
        var completed = 0
        var started: Duration
        var lastShown: Duration
    }

    private struct State {
        var phase: Phase?
        /// Characters of the bar currently on the terminal's line (0: none drawn).
        var drawnWidth = 0
    }

    private let state = Mutex(State())
    private let output: @Sendable (String) -> Void
    private let isTerminal: Bool
    private let clock: @Sendable () -> Duration

    /// An idle reporter; nothing is drawn until ``begin(_:total:unit:)``.
    ///
    /// - Parameters:
    ///   - output: Receives the text to write, newlines and `\r` included. Default: stderr.
    ///   - isTerminal: Whether to draw a bar (`true`) or plain lines. Default:
    ///     ``standardErrorIsTerminal(environment:)``.
    ///   - clock: Monotonic time since any fixed origin. Default: ``monotonicClock``.
    package init(output: @escaping @Sendable (String) -> Void = ProgressReporter.standardError,
                 isTerminal: Bool = ProgressReporter.standardErrorIsTerminal(),
                 clock: @escaping @Sendable () -> Duration = ProgressReporter.monotonicClock) {
        (self.output, self.isTerminal, self.clock) = (output, isTerminal, clock)
    }

    /// A reporter with its first phase begun (see ``begin(_:total:unit:)``).
    package convenience init(label: String, total: Int?, unit: Unit = "items",
                             output: @escaping @Sendable (String) -> Void = ProgressReporter.standardError,
                             isTerminal: Bool = ProgressReporter.standardErrorIsTerminal(),
                             clock: @escaping @Sendable () -> Duration = ProgressReporter.monotonicClock) {
        self.init(output: output, isTerminal: isTerminal, clock: clock)
        begin(label, total: total, unit: unit)
    }

    /// A reporter that writes nothing: the default of library calls whose caller shows no progress.
    package static var silent: ProgressReporter { ProgressReporter(output: { _ in }, isTerminal: false) }

    /// Writes to stderr.
    package static let standardError: @Sendable (String) -> Void = { text in
        FileHandle.standardError.write(Data(text.utf8))
    }

    private static let origin = ContinuousClock.now
    /// Time on the continuous (monotonic) clock since the first reporter asked.
    package static let monotonicClock: @Sendable () -> Duration = { ContinuousClock.now - origin }

    /// Whether stderr is a terminal a bar can be redrawn on: `isatty(2)`, unless `NO_COLOR` is set
    /// (non-empty) or `TERM` is `dumb` — those ask for plain output.
    package static func standardErrorIsTerminal(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> Bool {
        guard isatty(STDERR_FILENO) == 1 else { return false }
        return wantsRedraw(environment: environment)
    }

    /// The environment half of ``standardErrorIsTerminal(environment:)``.
    static func wantsRedraw(environment: [String: String]) -> Bool {
        if let noColor = environment["NO_COLOR"], !noColor.isEmpty { return false }
        return environment["TERM"] != "dumb"
    }

    /// Begins a phase, finishing the current one first if there is one.
    ///
    /// - Parameters:
    ///   - label: What is being done, e.g. `"simulating shoppers"` or `"reading events.csv"`.
    ///   - total: Items the phase will count, or nil when unknown (count and rate only).
    ///   - unit: What is counted.
    package func begin(_ label: String, total: Int?, unit: Unit = "items") {
        let now = clock()
        let text = state.withLock { state -> String in
            var text = finishText(&state, now: now)
            state.phase = Phase(label: label, total: total.map { max(0, $0) }, unit: unit, started: now, lastShown: now)
            if isTerminal, let phase = state.phase { text += redraw(&state, phase: phase, now: now) }
            return text
        }
        write(text)
    }

    /// Counts `count` more items done; redraws when it is time to. Ignored between phases.
    package func advance(by count: Int = 1) {
        update { $0 += count }
    }

    /// Sets the items done so far (e.g. bytes read); redraws when it is time to. Ignored between phases.
    package func set(_ completed: Int) {
        update { $0 = completed }
    }

    /// Writes `line` on a line of its own, above the bar.
    package func note(_ line: String) {
        let now = clock()
        let text = state.withLock { state -> String in
            guard isTerminal, let phase = state.phase else { return line + "\n" }
            let cleared = clear(&state)
            return cleared + line + "\n" + redraw(&state, phase: phase, now: now)
        }
        write(text)
    }

    /// Ends the current phase: its final count, rate and time, then a newline. Does nothing between phases.
    package func finish() {
        let now = clock()
        write(state.withLock { finishText(&$0, now: now) })
    }

    /// Ends the current phase without a final line — for work that failed or was abandoned: on a
    /// terminal the bar stays as it was and a newline follows it, so an error message starts on a
    /// line of its own. Does nothing between phases, so `defer { progress.stop() }` after ``begin(_:total:unit:)``
    /// is safe next to a ``finish()``.
    package func stop() {
        let text = state.withLock { state -> String in
            guard state.phase != nil else { return "" }
            state.phase = nil
            defer { state.drawnWidth = 0 }
            return state.drawnWidth > 0 ? "\n" : ""
        }
        write(text)
    }

    private func update(_ change: (inout Int) -> Void) {
        let now = clock()
        let text = state.withLock { state -> String in
            guard var phase = state.phase else { return "" }
            change(&phase.completed)
            state.phase = phase
            let interval = isTerminal ? Self.terminalInterval : Self.plainInterval
            guard now - phase.lastShown >= interval else { return "" }
            // A plain line for the last item would only repeat the final one that follows.
            if !isTerminal, let total = phase.total, phase.completed >= total { return "" }
            state.phase?.lastShown = now
            return isTerminal ? redraw(&state, phase: phase, now: now)
                : Self.plainLine(phase.label, completed: phase.completed, total: phase.total, unit: phase.unit,
                                 elapsed: now - phase.started, final: false) + "\n"
        }
        write(text)
    }

    private func finishText(_ state: inout State, now: Duration) -> String {
        guard let phase = state.phase else { return "" }
        state.phase = nil
        let elapsed = now - phase.started
        if isTerminal {
            let text = redraw(&state, phase: phase, now: now, final: true) + "\n"
            state.drawnWidth = 0
            return text
        }
        return Self.plainLine(phase.label, completed: phase.completed, total: phase.total, unit: phase.unit,
                              elapsed: elapsed, final: true) + "\n"
    }

    /// `\r`, the bar, and spaces over what is left of a longer previous bar.
    private func redraw(_ state: inout State, phase: Phase, now: Duration, final: Bool = false) -> String {
        let bar = Self.barLine(phase.label, completed: phase.completed, total: phase.total, unit: phase.unit,
                               elapsed: now - phase.started, final: final)
        let width = bar.count
        let padding = String(repeating: " ", count: max(0, state.drawnWidth - width))
        state.drawnWidth = width
        return "\r" + bar + padding
    }

    /// Blanks the bar's line and returns the cursor to its start.
    private func clear(_ state: inout State) -> String {
        guard state.drawnWidth > 0 else { return "" }
        let text = "\r" + String(repeating: " ", count: state.drawnWidth) + "\r"
        state.drawnWidth = 0
        return text
    }

    private func write(_ text: String) {
        if !text.isEmpty { output(text) }
    }
}

// MARK: - Formatting

extension ProgressReporter {
    /// A plain progress line (no newline): `label: 1200/5000 shoppers (24.0%), 310 shoppers/s, ETA 12s`;
    /// when `final`, `done in 16s` instead of the ETA.
    package static func plainLine(_ label: String, completed: Int, total: Int?, unit: Unit, elapsed: Duration,
                                  final: Bool) -> String {
        let rate = rate(completed: completed, elapsed: elapsed)
        let counted = count(completed, total: total, unit: unit)
        var parts = [counted + (total.map { " (\(percent(completed, of: $0)))" } ?? ""), speed(rate, unit: unit)]
        if final {
            parts.append("done in \(duration(elapsed.inSeconds))")
        } else if let total {
            parts.append("ETA \(eta(completed: completed, total: total, rate: rate))")
        } else {
            parts.append("\(duration(elapsed.inSeconds)) so far")
        }
        return "\(label): " + parts.joined(separator: ", ")
    }

    /// The terminal's bar (no `\r`, no newline): `label [#####...............] 1200/5000 shoppers 24.0%
    /// 310 shoppers/s ETA 12s`; without a total, no bar and no percentage.
    package static func barLine(_ label: String, completed: Int, total: Int?, unit: Unit, elapsed: Duration,
                                final: Bool) -> String {
        let rate = rate(completed: completed, elapsed: elapsed)
        var parts = [label]
        if let total {
            let fraction = total > 0 ? min(1, Double(completed) / Double(total)) : 1
            let filled = Int((fraction * Double(barWidth)).rounded(.down))
            parts.append("[" + String(repeating: "#", count: filled)
                         + String(repeating: ".", count: barWidth - filled) + "]")
            parts.append(count(completed, total: total, unit: unit))
            parts.append(percent(completed, of: total))
        } else {
            parts.append(count(completed, total: nil, unit: unit))
        }
        parts.append(speed(rate, unit: unit))
        if final {
            parts.append("done in \(duration(elapsed.inSeconds))")
        } else if let total {
            parts.append("ETA \(eta(completed: completed, total: total, rate: rate))")
        } else {
            parts.append(duration(elapsed.inSeconds))
        }
        return parts.joined(separator: " ")
    }

    /// Items per second so far; nil before the first item (or before any time has passed).
    static func rate(completed: Int, elapsed: Duration) -> Double? {
        let seconds = elapsed.inSeconds
        guard completed > 0, seconds > 0 else { return nil }
        return Double(completed) / seconds
    }

    static func eta(completed: Int, total: Int, rate: Double?) -> String {
        if completed >= total { return duration(0) }
        guard let rate, rate > 0 else { return "?" }
        return duration(Double(total - completed) / rate)
    }

    static func percent(_ completed: Int, of total: Int) -> String {
        let value = total > 0 ? min(100, 100 * Double(completed) / Double(total)) : 100
        return String(format: "%.1f%%", value)
    }

    /// `1200/5000 shoppers`, `1200 shoppers`, or for bytes `12.5/100.0 MB`.
    static func count(_ completed: Int, total: Int?, unit: Unit) -> String {
        guard unit.isBytes else {
            return total.map { "\(completed)/\($0) \(unit.name)" } ?? "\(completed) \(unit.name)"
        }
        let (divisor, symbol) = byteScale(Double(max(completed, total ?? 0)))
        func scaled(_ value: Int) -> String { String(format: "%.1f", Double(value) / divisor) }
        return total.map { "\(scaled(completed))/\(scaled($0)) \(symbol)" } ?? "\(scaled(completed)) \(symbol)"
    }

    static func speed(_ rate: Double?, unit: Unit) -> String {
        guard let rate else { return "? \(unit.isBytes ? "B" : unit.name)/s" }
        if unit.isBytes {
            let (divisor, symbol) = byteScale(rate)
            return String(format: "%.1f %@/s", rate / divisor, symbol)
        }
        return "\(compact(rate)) \(unit.name)/s"
    }

    static func byteScale(_ bytes: Double) -> (Double, String) {
        switch bytes {
        case ..<1e6: (1e3, "kB")
        case ..<1e9: (1e6, "MB")
        default: (1e9, "GB")
        }
    }

    /// A rate with about three significant digits: `0.123`, `4.56`, `78.9`, `310`, `12k`, `3.4M`.
    static func compact(_ value: Double) -> String {
        switch value {
        case ..<1: String(format: "%.3f", value)
        case ..<10: String(format: "%.2f", value)
        case ..<100: String(format: "%.1f", value)
        case ..<10_000: String(format: "%.0f", value)
        case ..<1_000_000: String(format: "%.0fk", value / 1e3)
        default: String(format: "%.1fM", value / 1e6)
        }
    }

    /// `45s`, `3m05s`, `2h07m`; `?` when not finite.
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds < 1e9 else { return "?" }
        let whole = Int(seconds.rounded())
        if whole < 60 { return "\(whole)s" }
        if whole < 3_600 { return String(format: "%dm%02ds", whole / 60, whole % 60) }
        return String(format: "%dh%02dm", whole / 3_600, whole % 3_600 / 60)
    }
}
