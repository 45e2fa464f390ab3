/// Waiting for a guest's server to listen, by polling the kernel's socket
/// table (`ListenerProbe`); nothing connects, so the guest sees no probe.
extension Sandbox {
    /// Returns once a socket listens on `port` at `address`.
    ///
    /// Fails at once with `.processExited` when `record` has exited (or,
    /// with no record, when no guest is left running and the last one
    /// ended), `.disposed` when the sandbox is being disposed,
    /// `.listenerTimeout` after `timeout`, `.cancelled` with the task.
    func waitForListener(
        port: Int, address: ListenerHost, timeout: Duration, watching record: GuestRecord?
    ) async throws(SecureExecError) {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = timeout.deadlineFromNow
        while true {
            if probe.isListening(port: port, address: address) { return }
            if isDisposed {
                throw SecureExecError(.disposed, "the runtime was disposed while waiting for port \(port)")
            }
            let watched = record ?? (hasRunningGuest ? nil : lastGuest)
            if let watched, let ended = watched.termination {
                let tail = String(decoding: watched.stderrTail, as: UTF8.self)
                throw SecureExecError(
                    .processExited,
                    "the guest \(ended) before listening on port \(port)"
                        + (tail.isEmpty ? "" : "; its stderr ended with:\n\(tail)"),
                    step: "wait for listener")
            }
            if clock.now >= deadline {
                throw SecureExecError(
                    .listenerTimeout, "nothing listened on port \(port) in the sandbox within \(timeout)",
                    step: "wait for listener")
            }
            // Poll fast at first (servers usually listen within a few ms), then back off.
            let interval: Duration = clock.now - start < .milliseconds(200) ? .milliseconds(1) : .milliseconds(5)
            do {
                try await Task.sleep(for: interval)
            } catch {
                throw SecureExecError(.cancelled, "waiting for port \(port) was cancelled", step: "wait for listener")
            }
        }
    }
}
