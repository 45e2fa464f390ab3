import Dispatch

/// Runs a handler once after a delay unless cancelled first.
///
/// Built on a Dispatch timer source because cancelling it removes the timer:
/// a cancelled `Task.sleep` still wakes the Dispatch pool at its original
/// deadline, and those late wake-ups keep idle pool threads alive, which the
/// leak tests would count as leaked threads.
public final class DeadlineTimer: @unchecked Sendable {
    // @unchecked: a Dispatch source is thread-safe; it is only resumed in init and cancelled after.
    private let source: any DispatchSourceTimer

    public init(after delay: Duration, _ handler: @escaping @Sendable () -> Void) {
        source = DispatchSource.makeTimerSource(queue: .global())
        let (seconds, attoseconds) = delay.components
        let nanoseconds = max(0, seconds) * 1_000_000_000 + max(0, attoseconds) / 1_000_000_000
        source.setEventHandler(handler: handler)
        source.schedule(deadline: .now() + .nanoseconds(Int(nanoseconds)))
        source.resume()
    }

    /// Stops the timer; the handler will not run if it has not started yet.
    public func cancel() { source.cancel() }

    deinit { source.cancel() }
}
