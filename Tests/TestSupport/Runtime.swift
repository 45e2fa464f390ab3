import Foundation
import SecureExec
import Testing

/// Runs `body` with a fresh runtime and disposes it afterwards, whether
/// `body` returns, throws (a failed `#require` included) or is cancelled.
///
/// Every guest still running is ended by the disposal, so a test that fails
/// half-way leaves no process behind. A disposal that has not returned after
/// `disposeDeadline` is recorded as an issue instead of hanging the whole run
/// (the runtime is then left to the process's exit, which ends its sandbox).
public func withRuntime<Result: Sendable>(
    root: RootImage = .standard, permissions: Permissions = Permissions(), limits: Limits = Limits(),
    mounts: [Mount] = [], workspace: Workspace? = nil,
    disposeDeadline: Duration = .seconds(20), sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (NodeRuntime) async throws -> Result
) async throws -> Result {
    let runtime = try await NodeRuntime.create(
        root: root, permissions: permissions, limits: limits, mounts: mounts, workspace: workspace)
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
public struct StartedGuest: Sendable {
    public let process: GuestProcess
    public let stdout: GuestOutput
    public let stderr: GuestOutput

    /// Waits for the exit and returns it with everything the guest printed.
    public func finish() async throws -> FinishedGuest {
        let termination = try await process.wait()
        return FinishedGuest(termination: termination, stdoutBytes: stdout.bytes, stderr: stderr.text)
    }
}

/// A guest that has ended: how, and everything it printed.
public struct FinishedGuest: Sendable, CustomStringConvertible {
    public let termination: Termination
    public let stdoutBytes: [UInt8]
    public let stderr: String

    public var stdout: String { String(decoding: stdoutBytes, as: UTF8.self) }

    /// Stdout without its final newline: the one line a `console.log` guest printed.
    public var line: String { stdout.hasSuffix("\n") ? String(stdout.dropLast()) : stdout }

    /// The first line of stdout (all of it when it has no newline).
    public var firstLine: String {
        stdout.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
    }

    public var description: String { "\(termination); stdout: \(stdout.debugDescription); stderr: \(stderr.debugDescription)" }

    /// Stdout decoded as JSON.
    public func json<Value: Decodable>(_ type: Value.Type) throws -> Value {
        try JSONDecoder().decode(Value.self, from: Data(stdoutBytes))
    }
}

extension NodeRuntime {
    /// Spawns `code` with its output collected; `stdoutKeep` bounds the stdout bytes kept (for floods).
    public func startGuest(
        _ code: String, arguments: [String] = [], environment: [String: String] = [:], timeout: Duration? = nil,
        stdoutKeep: Int = .max
    ) async throws -> StartedGuest {
        let stdout = GuestOutput(keep: stdoutKeep)
        let stderr = GuestOutput()
        let process = try await spawn(
            code, arguments: arguments, environment: environment, timeout: timeout, onStdout: stdout.sink,
            onStderr: stderr.sink)
        return StartedGuest(process: process, stdout: stdout, stderr: stderr)
    }

    /// Runs `code` to its end and returns how it ended and what it printed.
    public func runGuest(_ code: String, arguments: [String] = [], environment: [String: String] = [:]) async throws
        -> FinishedGuest
    {
        try await startGuest(code, arguments: arguments, environment: environment).finish()
    }
}

/// The first index where two byte arrays differ (a length difference counts), or nil when equal.
///
/// Comparing megabytes with `#expect(a == b)` would print both arrays; this
/// reports one index instead.
public func firstDifference(_ actual: [UInt8], _ expected: [UInt8]) -> Int? {
    for index in 0..<min(actual.count, expected.count) where actual[index] != expected[index] { return index }
    return actual.count == expected.count ? nil : min(actual.count, expected.count)
}
