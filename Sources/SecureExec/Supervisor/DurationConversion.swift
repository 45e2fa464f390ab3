import Dispatch

/// The one place a caller's `Duration` becomes a deadline or a Dispatch
/// interval. Any duration is accepted: one too large to add to a clock
/// means "practically never", not a trap, and fractions round up.
extension Duration {
    /// About 100 years: longer than anything waits, short enough to add to any clock.
    static let practicallyForever: Duration = .seconds(100 * 365 * 24 * 3600)

    /// The deadline `self` from now on the continuous clock.
    var deadlineFromNow: ContinuousClock.Instant {
        ContinuousClock.now.advanced(by: min(max(self, .zero), .practicallyForever))
    }
}

extension DispatchTimeInterval {
    /// `duration` in milliseconds, rounded up, clamped to `practicallyForever`.
    package static func clamped(_ duration: Duration) -> DispatchTimeInterval {
        let (seconds, attoseconds) = min(duration, .practicallyForever).components
        guard seconds >= 0 else { return .milliseconds(0) }
        let milliseconds = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return .milliseconds(Int(milliseconds))
    }
}
