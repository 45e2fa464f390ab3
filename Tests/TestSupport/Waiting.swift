import Synchronization

/// Lets exactly one caller through.
public final class Latch: Sendable {
    private let claimed = Mutex(false)

    public init() {}

    /// True for the first caller only.
    public func claim() -> Bool {
        claimed.withLock { claimed in
            defer { claimed = true }
            return !claimed
        }
    }
}

/// The value of `task` if it finishes within `limit`, else nil (the task keeps running).
///
/// Unlike a task group, this does not wait for a task that ignores
/// cancellation: a hang becomes nil. The deadline is a `DeadlineTimer`, so
/// an early finish leaves no sleeping task behind.
public func value<Value: Sendable>(of task: Task<Value, Never>, within limit: Duration) async -> Value? {
    let decided = Latch()
    return await withCheckedContinuation { (continuation: CheckedContinuation<Value?, Never>) in
        let timer = DeadlineTimer(after: limit) {
            if decided.claim() { continuation.resume(returning: nil) }
        }
        Task {
            let value = await task.value
            timer.cancel()
            if decided.claim() { continuation.resume(returning: value) }
        }
    }
}

/// Runs `operation` in a task of its own and reports whether it finished within `limit`.
public func finishes(within limit: Duration, _ operation: @escaping @Sendable () async -> Void) async -> Bool {
    await value(of: Task { await operation() }, within: limit) != nil
}

/// Polls `condition` every `interval` until it holds or `timeout` passes; returns its last value.
public func poll(
    for timeout: Duration = .seconds(5), every interval: Duration = .milliseconds(20), until condition: () -> Bool
) async -> Bool {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while !condition() {
        if ContinuousClock.now >= deadline { return false }
        try? await Task.sleep(for: interval)
    }
    return true
}
