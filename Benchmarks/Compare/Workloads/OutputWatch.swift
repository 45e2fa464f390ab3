import Synchronization

/// Collects a guest's stdout from SecureExec's `onStdout` callback and
/// remembers when the first byte and a given text arrived (timestamps taken
/// in the callback, so how soon the harness looks does not matter).
public final class OutputWatch: Sendable {
    private struct State {
        var bytes: [UInt8] = []
        var firstByteAt: Int64?
        var needleAt: Int64?
    }

    private let needle: [UInt8]
    private let state = Mutex(State())

    /// `needle`: the text whose arrival `needleAt` records (none: only the first byte).
    public init(needle: String = "") { self.needle = Array(needle.utf8) }

    /// Pass this as `onStdout`.
    public var callback: @Sendable ([UInt8]) -> Void {
        { [self] chunk in
            let now = monotonicNanos()
            state.withLock { state in
                if state.firstByteAt == nil && !chunk.isEmpty { state.firstByteAt = now }
                state.bytes += chunk
                if state.needleAt == nil && !needle.isEmpty && state.bytes.containsBytes(needle) { state.needleAt = now }
            }
        }
    }

    public var firstByteAt: Int64? { state.withLock { $0.firstByteAt } }
    public var needleAt: Int64? { state.withLock { $0.needleAt } }
    public var text: String { state.withLock { String(decoding: $0.bytes, as: UTF8.self) } }

    /// Suspends (polling every millisecond; the times themselves come from the callback) until `condition` holds on this watch,
    /// failing when `gaveUp` says the guest is gone or after `timeout`.
    public func wait(
        _ what: String, timeout: Duration = .seconds(20), gaveUp: () -> Bool = { false },
        until condition: (OutputWatch) -> Bool
    ) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while !condition(self) {
            if gaveUp() {
                // One last look: the output may land just after the exit.
                try await Task.sleep(for: .milliseconds(50))
                if condition(self) { return }
                throw BenchmarkFailure("the guest ended before \(what); its stdout: \(text.debugDescription)")
            }
            if clock.now >= deadline { throw BenchmarkFailure("no \(what) within \(timeout); stdout so far: \(text.debugDescription)") }
            try await Task.sleep(for: .milliseconds(1))
        }
    }
}
