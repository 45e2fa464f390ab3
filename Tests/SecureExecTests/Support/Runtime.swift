import Foundation
import SecureExec
import Synchronization
import Testing

/// Runs `body` with a fresh runtime and disposes it afterwards, whether
/// `body` returns, throws (a failed `#require` included) or is cancelled.
///
/// Every guest still running is ended by the disposal, so a test that fails
/// half-way leaves no process behind. A disposal that has not returned after
/// `disposeDeadline` is recorded as an issue instead of hanging the whole run
/// (the runtime is then left to the process's exit, which ends its sandbox).
func withRuntime<Result: Sendable>(
    network: Permissions.Access = .deny, limits: Limits = Limits(), disposeDeadline: Duration = .seconds(15),
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (NodeRuntime) async throws -> Result
) async throws -> Result {
    let runtime = try await NodeRuntime.create(permissions: Permissions(network: network), limits: limits)
    let outcome: Swift.Result<Result, any Error>
    do {
        outcome = .success(try await body(runtime))
    } catch {
        outcome = .failure(error)
    }
    let disposed = await finishes(within: disposeDeadline) { await runtime.dispose() }
    if !disposed {
        Issue.record("dispose() did not return within \(disposeDeadline)", sourceLocation: sourceLocation)
    }
    return try outcome.get()
}

/// A guest that was started with its stdout and stderr collected.
struct StartedGuest: Sendable {
    let process: GuestProcess
    let stdout: GuestOutput
    let stderr: GuestOutput

    /// Waits for the exit and returns it with everything the guest printed.
    func finish() async -> FinishedGuest {
        let termination = await process.wait()
        return FinishedGuest(termination: termination, stdoutBytes: stdout.bytes, stderr: stderr.text)
    }
}

/// A guest that has ended: how, and everything it printed.
struct FinishedGuest: Sendable {
    let termination: Termination
    let stdoutBytes: [UInt8]
    let stderr: String

    var stdout: String { String(decoding: stdoutBytes, as: UTF8.self) }

    /// Stdout without its final newline: the one line a `console.log` guest printed.
    var line: String { stdout.hasSuffix("\n") ? String(stdout.dropLast()) : stdout }

    /// Stdout decoded as JSON.
    func json<Value: Decodable>(_ type: Value.Type) throws -> Value {
        try JSONDecoder().decode(Value.self, from: Data(stdoutBytes))
    }
}

extension NodeRuntime {
    /// Spawns `code` with its output collected.
    func startGuest(_ code: String, arguments: [String] = [], environment: [String: String] = [:]) async throws
        -> StartedGuest
    {
        let stdout = GuestOutput()
        let stderr = GuestOutput()
        let process = try await spawn(
            code, arguments: arguments, environment: environment, onStdout: stdout.sink, onStderr: stderr.sink)
        return StartedGuest(process: process, stdout: stdout, stderr: stderr)
    }

    /// Runs `code` to its end and returns how it ended and what it printed.
    func runGuest(_ code: String, arguments: [String] = [], environment: [String: String] = [:]) async throws
        -> FinishedGuest
    {
        try await startGuest(code, arguments: arguments, environment: environment).finish()
    }
}

/// The first index where two byte arrays differ (a length difference counts), or nil when equal.
///
/// Comparing megabytes with `#expect(a == b)` would print both arrays; this
/// reports one index instead.
func firstDifference(_ actual: [UInt8], _ expected: [UInt8]) -> Int? {
    for index in 0..<min(actual.count, expected.count) where actual[index] != expected[index] { return index }
    return actual.count == expected.count ? nil : min(actual.count, expected.count)
}

/// Runs `operation` in a task of its own and reports whether it finished within `limit`.
///
/// Unlike a task group, this does not wait for an operation that ignores
/// cancellation: a hang becomes `false` (and the operation keeps running).
func finishes(within limit: Duration, _ operation: @escaping @Sendable () async -> Void) async -> Bool {
    let decided = Latch()
    return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
        let timer = DeadlineTimer(after: limit) {
            if decided.claim() { continuation.resume(returning: false) }
        }
        Task {
            await operation()
            timer.cancel()
            if decided.claim() { continuation.resume(returning: true) }
        }
    }
}

/// Lets exactly one caller through.
final class Latch: Sendable {
    private let claimed = Mutex(false)

    /// True for the first caller only.
    func claim() -> Bool {
        claimed.withLock { claimed in
            defer { claimed = true }
            return !claimed
        }
    }
}
