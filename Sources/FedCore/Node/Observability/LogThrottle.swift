/// At most one log line per `interval` for a kind of event that may come in floods (refused rows, refused
/// clients, broker errors), with how many were left out since the last line: a flood cannot flood the log, and
/// nothing goes uncounted.
package struct LogThrottle: Sendable {
    private let interval: Duration
    private var last: ContinuousClock.Instant?
    private var leftOut = 0

    package init(every interval: Duration) { self.interval = interval }

    /// Records `count` occurrences. When a line is due, returns how many were left out since the previous line
    /// (the caller logs this occurrence and says so); otherwise counts these as left out and returns nil.
    package mutating func due(count: Int = 1) -> Int? {
        let now = ContinuousClock.now
        if let last, now - last < interval {
            leftOut += count
            return nil
        }
        defer { (last, leftOut) = (now, count - 1) }
        return leftOut
    }
}
