
/// How a guest process ended.
public enum Termination: Sendable, Hashable, CustomStringConvertible {
    /// It exited with this code.
    case exited(Int32)
    /// A signal ended it (from `kill`, from `dispose`, or its own doing).
    case signaled(Signal)
    /// The kernel killed it because the runtime reached `Limits.memoryBytes`.
    case outOfMemory
    /// It ran past the `timeout` given to `spawn` and was killed.
    case timedOut
    /// It used up `Limits.cpuTimePerProcess`.
    case cpuLimit

    /// A short phrase for logs, e.g. "exited with code 2" or "killed by SIGTERM".
    public var description: String {
        switch self {
        case .exited(let code): "exited with code \(code)"
        case .signaled(let signal): "killed by \(signal)"
        case .outOfMemory: "killed for running out of memory (the runtime's memory limit)"
        case .timedOut: "killed after its timeout"
        case .cpuLimit: "killed for using up its CPU-time limit"
        }
    }
}

/// A process running in a sandbox, returned by `NodeRuntime.spawn` as soon
/// as it has started.
///
/// Its stdout and stderr go to the callbacks given to `spawn`, in order, as
/// chunks of raw bytes. `wait()` returns after the exit and after the last
/// byte it wrote has been delivered.
///
/// It is `Sendable`: kill, wait and write stdin from any task. Releasing it
/// does not end the process; `NodeRuntime.dispose()` ends every process.
public final class GuestProcess: Sendable {
    /// The process id as the guest sees it (`process.pid` inside the sandbox).
    public let pid: Int32
    let record: GuestRecord
    let runtime: NodeRuntime

    init(record: GuestRecord, runtime: NodeRuntime) {
        self.record = record
        self.pid = record.pid
        self.runtime = runtime
    }

    /// Sends `signal` (SIGTERM by default). Does nothing if it already exited.
    ///
    /// Returns at once, before the signal is delivered; `wait()` tells how it
    /// ended. A signal sent right after `spawn` can arrive before node has set
    /// up the guest's own handlers (`process.on("SIGTERM")`); it then has its
    /// default effect: wait for a sign of readiness (a line of output, a
    /// listener) first when the guest's handler matters.
    public func kill(_ signal: Signal = .terminate) {
        runtime.sandbox.signal(record, signal.rawValue)
    }

    /// Waits until the process has ended and all its output was delivered.
    ///
    /// If a descendant still holds stdout or stderr open, it returns 2 s after
    /// the exit anyway (the stream is still read until it closes). Any number
    /// of tasks may wait; all get the same answer.
    ///
    /// Cancelling the waiting task ends the process (SIGTERM, then SIGKILL
    /// after `Limits.terminationGrace`) and throws `.cancelled` once it is
    /// gone: nothing keeps running that the caller stopped waiting for. To
    /// stop waiting without ending it, don't cancel; race the wait instead.
    @discardableResult
    public func wait() async throws(SecureExecError) -> Termination {
        if let termination = await record.wait() { return termination }
        await runtime.sandbox.terminate(record)
        throw SecureExecError(
            .cancelled, "waiting for the process was cancelled; it was ended (SIGTERM, then SIGKILL after the grace period)",
            step: "wait")
    }

    /// How it ended, or nil while it runs.
    public var termination: Termination? { record.termination }

    /// The exit code, or nil while it runs or when a signal ended it.
    public var exitCode: Int32? {
        if case .exited(let code)? = termination { return code }
        return nil
    }

    /// Writes bytes to the process's stdin. Suspends (without holding a
    /// thread) while the guest is not reading; cancel the task to give up.
    /// Throws `.invalidArgument` after `closeStdin()`, `.ioFailed` once the
    /// guest has closed its end.
    public func writeStdin(_ bytes: [UInt8]) async throws(SecureExecError) { try await record.writeStdin(bytes) }

    /// Writes UTF-8 text to the process's stdin; see `writeStdin(_:)`.
    public func writeStdin(_ text: String) async throws(SecureExecError) { try await record.writeStdin(Array(text.utf8)) }

    /// True if the guest wrote more to stdout than `Limits.outputBytesPerStream`;
    /// the excess was dropped, not delivered.
    public var stdoutTruncated: Bool { record.truncated(stream: 1) }

    /// True if the guest wrote more to stderr than `Limits.outputBytesPerStream`.
    public var stderrTruncated: Bool { record.truncated(stream: 2) }

    /// Its stdout as chunks, when `spawn` was given no `onStdout`; see
    /// `OutputChunks` for buffering and backpressure.
    public var stdout: OutputChunks {
        OutputChunks(queue: record.stdoutChunks, record: record, stream: 1, delivered: record.isQueued(stream: 1))
    }

    /// Its stderr as chunks, when `spawn` was given no `onStderr`.
    public var stderr: OutputChunks {
        OutputChunks(queue: record.stderrChunks, record: record, stream: 2, delivered: record.isQueued(stream: 2))
    }

    /// Closes stdin: the guest reads end-of-file.
    public func closeStdin() { record.closeStdin() }
}
