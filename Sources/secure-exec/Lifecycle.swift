import Dispatch
import SecureExec
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How the operator's Ctrl-C (SIGINT) and SIGTERM end a `run` or `serve`,
/// so that one can always stop it without killing the CLI itself:
///
/// - the first asks the guest to stop with SIGTERM and, if it is still
///   running after the grace period, kills it with SIGKILL;
/// - the second kills the guest at once with SIGKILL; with no guest to kill
///   (the sandbox is still being made, or being removed) the CLI exits at
///   once, and the kernel ends the sandbox with it.
///
/// The handlers are installed before the sandbox is made, so a signal that
/// comes before the guest exists is remembered and applied when it is
/// attached.
final class Lifecycle: Sendable {
    /// What the operator's signals did to the guest.
    enum Stop: Sendable, Equatable {
        /// No signal came.
        case none
        /// SIGTERM was sent.
        case terminated
        /// SIGTERM was sent and, the guest still running after the grace period, SIGKILL.
        case escalated
        /// A second signal sent SIGKILL at once.
        case forced
    }

    private struct State {
        var signals = 0
        /// The first signal that came (SIGINT or SIGTERM).
        var firstSignal: Int32 = 0
        var process: GuestProcess?
        var stop: Stop = .none
        /// The code the CLI exits with if a signal makes it quit at once.
        var exitCode: Int32?
        var escalation: Task<Void, Never>?
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    let grace: Duration
    /// The exit code when interrupted with no guest result yet: nil for
    /// 128 + the signal's number (run), or a fixed code (serve: 0).
    private let interruptedCode: Int32?
    private let state = Mutex(State())
    private let sources = Mutex<[DispatchSourceSignalBox]>([])

    init(grace: Duration, interruptedCode: Int32?) {
        self.grace = grace
        self.interruptedCode = interruptedCode
    }

    /// Starts handling SIGINT and SIGTERM (instead of dying of them).
    func install() {
        let queue = DispatchQueue(label: "secure-exec.signals")
        var made: [DispatchSourceSignalBox] = []
        for signal in [SIGINT, SIGTERM] {
            Glibc.signal(signal, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signal, queue: queue)
            source.setEventHandler { [self] in self.received(signal) }
            source.resume()
            made.append(DispatchSourceSignalBox(source: source))
        }
        sources.withLock { $0 = made }
    }

    /// The guest the signals are for; a signal that came before applies now.
    func attach(_ process: GuestProcess) {
        let pending = state.withLock { state -> Int in
            state.process = process
            return state.signals
        }
        if pending == 1 { terminate(process) }
        if pending >= 2 { kill(process) }
    }

    /// The guest has ended: signals from now on have no guest to act on,
    /// and a second one exits at once with `code`.
    func guestEnded(exitCode code: Int32) {
        state.withLock { state in
            state.process = nil
            state.exitCode = code
            state.escalation?.cancel()
            state.escalation = nil
        }
    }

    /// Whether a signal came.
    var stopRequested: Bool { state.withLock { $0.signals > 0 } }

    /// What the signals did to the guest.
    var stop: Stop { state.withLock { $0.stop } }

    /// The code for an interrupted command that has no guest result.
    var interruptedExitCode: Int32 { interruptedCode ?? 128 + state.withLock { $0.firstSignal } }

    /// Returns once the first signal has come (at once if it already has).
    func waitForStop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.signals > 0 { return true }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// Stops handling the signals (they stay ignored until the CLI exits).
    func remove() {
        sources.withLock { sources in
            sources.forEach { $0.source.cancel() }
            sources = []
        }
        state.withLock { state in
            state.escalation?.cancel()
            state.escalation = nil
        }
    }

    private func received(_ signal: Int32) {
        let (count, process, waiters, exitCode) = state.withLock { state in
            state.signals += 1
            if state.signals == 1 { state.firstSignal = signal }
            let waiters = state.waiters
            state.waiters = []
            return (state.signals, state.process, waiters, state.exitCode)
        }
        waiters.forEach { $0.resume() }
        guard let process else {
            if count >= 2 {
                // Nothing to kill but the CLI's own wait (the sandbox is being
                // made or removed): quit now; the sandbox dies with us.
                let line = "secure-exec: second interrupt: exiting without waiting for the sandbox\n"
                _ = line.withCString { write(2, $0, strlen($0)) }
                _exit(exitCode ?? interruptedExitCode)
            }
            return
        }
        if count == 1 { terminate(process) } else { kill(process) }
    }

    /// SIGTERM now, SIGKILL after the grace period if the guest still runs.
    private func terminate(_ process: GuestProcess) {
        state.withLock { state in
            if state.stop == .none { state.stop = .terminated }
        }
        process.kill(.terminate)
        let escalation = Task { [grace] in
            try? await Task.sleep(for: grace)
            guard !Task.isCancelled, process.termination == nil else { return }
            let escalate = state.withLock { state -> Bool in
                guard state.stop == .terminated, state.process != nil else { return false }
                state.stop = .escalated
                return true
            }
            if escalate { process.kill(.kill) }
        }
        state.withLock { state in
            if state.escalation == nil, state.process != nil { state.escalation = escalation } else { escalation.cancel() }
        }
    }

    private func kill(_ process: GuestProcess) {
        state.withLock { state in
            if state.stop != .escalated { state.stop = .forced }
            state.escalation?.cancel()
            state.escalation = nil
        }
        process.kill(.kill)
    }
}

/// Dispatch sources are thread-safe; the overlay just lacks the Sendable mark.
struct DispatchSourceSignalBox: @unchecked Sendable {
    let source: any DispatchSourceSignal
}
