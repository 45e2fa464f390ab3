import CNamespaces
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

extension Termination {
    /// How a process ended, from its raw wait status (before the supervisor
    /// tells which limit, if any, ended it).
    init(waitStatus status: Int32) {
        if status & 0x7f == 0 {
            self = .exited((status >> 8) & 0xff)
        } else {
            self = .signaled(.fromKernel(status & 0x7f))
        }
    }
}

/// The supervisor's book on one guest process: its pid, stdin, output
/// streams and how it ended.
///
/// `wait()` resolves once the exit is known and both output pipes reached
/// EOF, so every byte the guest wrote has been handed to the callbacks first.
/// If a descendant keeps a pipe open after the guest exits, `wait()` resolves
/// anyway after `drainGrace`; the pipe keeps being read until it closes.
///
/// Concurrency: `state` guards everything mutable. The pumps and the drain
/// timer run on the sandbox's queue; `ended` comes from init's exit event
/// (same queue); `wait` and `writeStdin` suspend without holding a thread;
/// continuations are resumed outside the lock.
package final class GuestRecord: Sendable {
    package static let drainGrace: Duration = .seconds(2)
    private static let stderrTailLimit = 4096

    private struct State {
        var pid: Int32 = 0
        var termination: Termination?
        var openStreams = 2
        var drainExpired = false
        var stdin: Int32 = -1
        var stderrTail: [UInt8] = []
        var waiters: [UInt64: CheckedContinuation<Termination?, Never>] = [:]
        var nextWaiter: UInt64 = 0
        var pumps: [StdioPump] = []
        var timedOut = false
        var truncated: Set<Int32> = []
        /// Streams (1, 2) with no callback: their chunks wait in a ChunkQueue.
        var queued: Set<Int32> = []
    }

    private let state = Mutex(State())
    let queue: DispatchQueue
    /// Where output goes when no callback was given for it (read through
    /// `GuestProcess.stdout` and `.stderr`).
    let stdoutChunks = ChunkQueue()
    let stderrChunks = ChunkQueue()

    init(queue: DispatchQueue) { self.queue = queue }

    package var pid: Int32 { state.withLock { $0.pid } }
    package var termination: Termination? { state.withLock { $0.termination } }
    package var isRunning: Bool { state.withLock { $0.termination == nil } }

    /// The last few KiB the guest wrote to stderr (for error reports).
    package var stderrTail: [UInt8] { state.withLock { $0.stderrTail } }

    func attach(stdin: Int32, stdout: Int32, stderr: Int32, outputLimit: Int,
                onStdout: (@Sendable ([UInt8]) -> Void)?, onStderr: (@Sendable ([UInt8]) -> Void)?)
    {
        // The caller's callbacks run on a queue of this guest's own, never on
        // the sandbox's: a slow consumer slows only this guest's output (the
        // pump waits for it), not the runtime's events or file operations.
        let output = DispatchQueue(label: "secure-exec.guest-output")
        // Without a callback, a stream's chunks wait in its ChunkQueue for a reader.
        let stdoutQueue = stdoutChunks
        let stderrQueue = stderrChunks
        let stdoutSink: @Sendable ([UInt8]) -> Void = onStdout ?? { chunk in stdoutQueue.push(chunk) }
        let stderrSink: @Sendable ([UInt8]) -> Void = onStderr ?? { chunk in stderrQueue.push(chunk) }
        let stdoutGate: ReadGate? = onStdout == nil ? stdoutQueue.gate : nil
        let stderrGate: ReadGate? = onStderr == nil ? stderrQueue.gate : nil
        let stdoutPump = StdioPump(
            fd: stdout, queue: output, limit: outputLimit, onChunk: stdoutSink,
            onTruncated: { [weak self] in self?.markTruncated(1) },
            onEnd: { [weak self] in
                stdoutQueue.finish()
                self?.streamEnded()
            },
            readGate: stdoutGate)
        let stderrPump = StdioPump(
            fd: stderr, queue: output, limit: outputLimit,
            onChunk: { [weak self] chunk in
                self?.remember(stderr: chunk)
                stderrSink(chunk)
            },
            onTruncated: { [weak self] in self?.markTruncated(2) },
            onEnd: { [weak self] in
                stderrQueue.finish()
                self?.streamEnded()
            },
            readGate: stderrGate)
        state.withLock {
            $0.stdin = stdin
            $0.pumps = [stdoutPump, stderrPump]
            if onStdout == nil { $0.queued.insert(1) }
            if onStderr == nil { $0.queued.insert(2) }
        }
    }

    func started(pid: Int32) { state.withLock { $0.pid = pid } }

    /// Marks that the supervisor is killing it for passing its timeout.
    func markTimedOut() { state.withLock { $0.timedOut = true } }
    var wasTimedOut: Bool { state.withLock { $0.timedOut } }

    private func markTruncated(_ stream: Int32) { state.withLock { _ = $0.truncated.insert(stream) } }

    /// Whether stream 1 (stdout) or 2 (stderr) goes to its ChunkQueue (no callback was given).
    func isQueued(stream: Int32) -> Bool { state.withLock { $0.queued.contains(stream) } }

    /// True if output on stream 1 (stdout) or 2 (stderr) passed the cap and was dropped.
    package func truncated(stream: Int32) -> Bool { state.withLock { $0.truncated.contains(stream) } }

    /// Records the exit; resolves waiters now or once the pipes drain.
    func ended(_ termination: Termination) {
        let stdin: Int32 = state.withLock { state in
            guard state.termination == nil else { return -1 }
            state.termination = termination
            let fd = state.stdin
            state.stdin = -1
            return fd
        }
        SystemCall.close(stdin)
        queue.asyncAfter(deadline: .now() + DispatchTimeInterval.clamped(Self.drainGrace)) { [weak self] in
            self?.state.withLock { $0.drainExpired = true }
            self?.resolveIfDone()
        }
        resolveIfDone()
    }

    /// Stops reading output (used when a spawn failed before the guest existed).
    func abandon() {
        let (pumps, stdin) = state.withLock { state in
            let result = (state.pumps, state.stdin)
            state.stdin = -1
            return result
        }
        SystemCall.close(stdin)
        pumps.forEach { $0.cancel() }
    }

    /// How it ended, once every byte of its output was delivered; nil when
    /// the task was cancelled first (the guest is left as it is).
    package func wait() async -> Termination? {
        let id = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now: Termination?? = state.withLock { state in
                    if let termination = state.termination, state.openStreams == 0 || state.drainExpired {
                        return .some(termination)
                    }
                    // Checked under the lock: a cancellation before the waiter
                    // is registered finds nothing to resume.
                    if Task.isCancelled { return .some(nil) }
                    state.waiters[id] = continuation
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(returning: nil)
        }
    }

    /// Writes to the guest's stdin, waiting (without blocking a thread) while
    /// the guest is not reading. Throws if stdin was closed, the guest has
    /// stopped reading for good, or the task is cancelled.
    package func writeStdin(_ bytes: [UInt8]) async throws(SecureExecError) {
        var offset = 0
        while offset < bytes.count {
            // The send runs under the lock (it never blocks), so `ended` or
            // `closeStdin` cannot close the descriptor, and another sandbox
            // reuse its number, between reading it and writing to it. Waiting
            // happens on a duplicate of our own.
            let (sent, error, waitOn): (Int, Int32, Int32) = state.withLock { state in
                guard state.stdin >= 0 else { return (-1, EBADF, -1) }
                let sent = bytes.withUnsafeBytes { buffer in
                    se_send_nonblocking(state.stdin, buffer.baseAddress! + offset, UInt(buffer.count - offset))
                }
                let error = sent < 0 ? errno : 0
                let waitOn = error == EAGAIN ? fcntl(state.stdin, F_DUPFD_CLOEXEC, 0) : -1
                return (sent, error, waitOn)
            }
            if sent >= 0 {
                offset += sent
                continue
            }
            switch error {
            case EBADF:
                throw SecureExecError(.invalidArgument, "stdin of this process is closed", step: "write stdin")
            case EINTR: continue
            case EAGAIN:
                defer { SystemCall.close(waitOn) }
                guard !Task.isCancelled else {
                    throw SecureExecError(.cancelled, "writing to stdin was cancelled", step: "write stdin")
                }
                if waitOn >= 0 { await FDReadiness.writable(waitOn) }
            case EPIPE, ECONNRESET:
                throw SecureExecError(.ioFailed, "the guest no longer reads its stdin", step: "write stdin", errno: error)
            default:
                throw SystemCall.failure(.ioFailed, "writing to the guest's stdin failed", step: "write stdin", errno: error)
            }
        }
    }

    package func closeStdin() {
        let fd: Int32 = state.withLock { state in
            let fd = state.stdin
            state.stdin = -1
            return fd
        }
        SystemCall.close(fd)
    }

    private func remember(stderr chunk: [UInt8]) {
        state.withLock { state in
            state.stderrTail += chunk
            if state.stderrTail.count > Self.stderrTailLimit {
                state.stderrTail.removeFirst(state.stderrTail.count - Self.stderrTailLimit)
            }
        }
    }

    private func streamEnded() {
        state.withLock { $0.openStreams -= 1 }
        resolveIfDone()
    }

    private func resolveIfDone() {
        let (termination, waiters): (Termination?, [CheckedContinuation<Termination?, Never>]) =
            state.withLock { state in
                guard let termination = state.termination, state.openStreams == 0 || state.drainExpired else {
                    return (nil, [])
                }
                let waiters = Array(state.waiters.values)
                state.waiters = [:]
                if state.openStreams == 0 { state.pumps = [] }
                return (termination, waiters)
            }
        guard let termination else { return }
        waiters.forEach { $0.resume(returning: termination) }
    }
}
