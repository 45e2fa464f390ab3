import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A program the test runs on the host, with stdout and stderr collected.
///
/// Always `stop()` it (use `defer`): that SIGKILLs it if it still runs and
/// reaps it, so no host process outlives the test that started it.
final class HostProgram {
    let process: Process
    let stdout = GuestOutput()
    let stderr = GuestOutput()
    // Each gets one byte: when the process has exited, and when both its pipes reached end-of-file.
    private let terminated = GuestOutput()
    private let drained = GuestOutput()

    /// Starts `executable` with `arguments`; its environment is this process's plus `environment`.
    init(_ executable: String, arguments: [String] = [], environment: [String: String] = [:]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        self.process = process
        let pending = PendingEvents(count: 2) { [drained] in drained.append([1]) }
        for (pipe, sink) in [(out, stdout), (err, stderr)] {
            pipe.fileHandleForReading.readabilityHandler = { handle in
                let data = handle.availableData
                if data.isEmpty {
                    handle.readabilityHandler = nil
                    pending.done()
                } else {
                    sink.append(Array(data))
                }
            }
        }
        process.terminationHandler = { [terminated] _ in terminated.append([1]) }
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    /// Waits for the exit and, when `includingOutput`, for the end of its output (a process
    /// it started may hold its pipes open longer); throws `OutputTimeout` after `timeout`.
    @discardableResult
    func waitForExit(includingOutput: Bool = true, timeout: Duration = .seconds(30)) async throws
        -> (status: Int32, reason: Process.TerminationReason)
    {
        try await terminated.waitUntilContains("\u{1}", timeout: timeout)
        if includingOutput { try await drained.waitUntilContains("\u{1}", timeout: timeout) }
        return (process.terminationStatus, process.terminationReason)
    }

    /// SIGKILLs the program if it still runs and reaps it. Idempotent.
    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

/// Calls `action` once `done()` has been called `count` times.
private final class PendingEvents: Sendable {
    private let remaining: Mutex<Int>
    private let action: @Sendable () -> Void

    init(count: Int, action: @escaping @Sendable () -> Void) {
        remaining = Mutex(count)
        self.action = action
    }

    func done() {
        if remaining.withLock({ $0 -= 1; return $0 == 0 }) { action() }
    }
}
