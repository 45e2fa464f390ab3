import Dispatch

extension DispatchTimeInterval {
    /// `duration` in milliseconds, rounded up, and clamped to a range Dispatch
    /// can add to `now()` without overflow (at most about 100 years), so a
    /// huge caller-given duration means "practically never", not a trap.
    package static func clamped(_ duration: Duration) -> DispatchTimeInterval {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return .milliseconds(0) }
        let ceiling: Int64 = 100 * 365 * 24 * 3600
        if seconds >= ceiling { return .seconds(Int(ceiling)) }
        let milliseconds = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return .milliseconds(Int(milliseconds))
    }
}
