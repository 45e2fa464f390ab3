import CNamespaces
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One sandbox: an init process in fresh namespaces and the guests it runs.
///
/// `SandboxLauncher` builds it; `dispose()` ends it (idempotent). Until then
/// init and its namespaces live. If the host process dies, init sees its
/// control socket hang up and exits, and the kernel ends every guest with it.
///
/// Concurrency: `queue` is the sandbox's serial Dispatch queue; init's events,
/// output pumps and timers run there, and never block. `state` guards the
/// phase and the exposures dispose must close. Public calls come from any
/// task; blocking teardown steps run on a Dispatch thread (`Blocking`).
package final class Sandbox: Sendable {
    package static let guestUID: UInt32 = 1000
    package static let nodePath = "/usr/bin/node"
    package static let workspace = "/workspace"

    /// init's pid on the host.
    package let initPID: Int32
    let pidfd: Int32
    let netnsFD: Int32
    let lease: UIDRangeLease
    let cgroup: SandboxCgroup?
    let queue: DispatchQueue
    let configuration: SandboxConfiguration
    let connection: InitConnection
    let guests: GuestTable
    /// Kept-alive HTTP connections to the guests' ports.
    package let http: GuestConnectionPool
    /// DNS and outbound connections, when the runtime was created with an egress policy.
    package let egress: EgressGateway?
    private let state = Mutex(State())

    private enum Phase { case ready, disposing, disposed }

    private struct State {
        var phase = Phase.ready
        var disposal: Task<Void, Never>?
        var exposures: [PortExposure] = []
    }

    init(_ started: SandboxLauncher.Started, configuration: SandboxConfiguration, egress: EgressGateway?) {
        self.egress = egress
        initPID = started.pid
        pidfd = started.pidfd
        netnsFD = started.netnsFD
        lease = started.lease
        cgroup = started.cgroup
        self.configuration = configuration
        queue = DispatchQueue(label: "secure-exec.sandbox.\(started.pid)")
        http = GuestConnectionPool(dialer: NetnsDialer(netnsFD: started.netnsFD))
        let guests = GuestTable(cgroup: started.cgroup)
        self.guests = guests
        connection = InitConnection(
            fd: started.controlFD, queue: queue, logger: configuration.logger,
            onExit: { pid, status in guests.exited(pid: pid, status: status) },
            onClosed: { guests.endAll() })
    }

    package var dialer: NetnsDialer { NetnsDialer(netnsFD: netnsFD) }
    package var probe: ListenerProbe { ListenerProbe(initPID: initPID) }
    package var isDisposed: Bool { state.withLock { $0.phase != .ready } }

    private func checkReady(_ step: String) throws(SecureExecError) {
        guard !isDisposed else { throw SecureExecError(.disposed, "the runtime has been disposed", step: step) }
    }

    // MARK: - Guests

    /// Starts a guest and returns once init reports its pid.
    func spawn(_ request: SpawnRequest) async throws(SecureExecError) -> GuestRecord {
        try checkReady("spawn")
        let stdio = try GuestStdio.make(code: request.code)
        let record = GuestRecord(queue: queue)
        let host = stdio.handOverHostEnds()
        record.attach(
            stdin: host.stdin, stdout: host.stdout, stderr: host.stderr,
            outputLimit: configuration.limits.outputBytesPerStream, onStdout: request.onStdout, onStderr: request.onStderr)
        let limits = configuration.limits
        let root = configuration.root
        guests.willStart()
        let reply: PendingReply
        do throws(SecureExecError) {
            // The guest's ends must stay open until the request carrying them
            // is sent: `stdio` closes them when it goes.
            reply = try withExtendedLifetime(stdio) { () throws(SecureExecError) in
                try connection.request(
                SE_REQ_SPAWN, step: "spawn",
                records: { id in
                    InitProtocol.spawnRecords(
                        request, entry: request.code == nil ? nil : InitProtocol.entryPath(request: id), limits: limits,
                        root: root)
                },
                fds: stdio.guestEnds,
                // Booked as init's answer arrives, before its exit can be seen.
                onReply: { [guests] result in
                    if case .success(.spawned(let pid)) = result {
                        guests.didStart(record, pid: pid)
                    } else {
                        guests.didStart(record, pid: nil)
                        record.abandon()
                    }
                })
            }
        } catch {
            guests.didStart(record, pid: nil)
            record.abandon()
            throw error
        }
        switch await reply.wait() {
        case .success(.spawned): break
        case .success(let other):
            throw SecureExecError(.protocolError, "init answered a spawn request with \(other)", step: "spawn")
        case .failure(let error): throw error
        }
        if let timeout = request.timeout {
            queue.asyncAfter(deadline: .now() + DispatchTimeInterval.clamped(timeout)) { [weak self, weak record] in
                guard let self, let record, record.isRunning else { return }
                record.markTimedOut()
                self.signal(record, SIGKILL)
            }
        }
        return record
    }

    /// Sends `signal` to a running guest; a guest that already exited is left alone.
    func signal(_ record: GuestRecord, _ signal: Int32) {
        guard record.isRunning, record.pid > 0 else { return }
        try? connection.post(SE_REQ_SIGNAL, targetPID: record.pid, signal: signal)
    }

    /// Ends one guest: SIGTERM, then SIGKILL after the grace period; returns
    /// once it has exited (or a few seconds after SIGKILL, should init not
    /// report it). Runs to the end even when the calling task is cancelled:
    /// it is what cancellation of a wait does.
    func terminate(_ record: GuestRecord) async {
        let grace = configuration.limits.terminationGrace
        await Task {
            guard record.isRunning, !self.isDisposed else { return }
            self.signal(record, SIGTERM)
            let deadline = grace.deadlineFromNow
            while record.isRunning, ContinuousClock.now < deadline, !self.isDisposed {
                try? await Task.sleep(for: .milliseconds(5))
            }
            guard record.isRunning, !self.isDisposed else { return }
            self.signal(record, SIGKILL)
            let killed = Duration.seconds(5).deadlineFromNow
            while record.isRunning, ContinuousClock.now < killed, !self.isDisposed {
                try? await Task.sleep(for: .milliseconds(5))
            }
        }.value
    }

    /// Whether a guest runs or is starting.
    var hasRunningGuest: Bool { guests.hasRunningGuest }
    /// The guest started last.
    var lastGuest: GuestRecord? { guests.lastStarted }

    // MARK: - Files

    /// Asks init for one file operation with `fd` attached and returns a
    /// function that waits for its result: 0, or the operation's errno
    /// (EINTR when the sandbox ended first). The caller moves data through
    /// its own end of `fd`'s pair meanwhile.
    ///
    /// When no answer has come after the file-operation timeout, the result
    /// is ETIMEDOUT and `onTimeout` runs (it should end the caller's data
    /// transfer); a late answer is then ignored.
    func startFileRequest(
        records: [String], fd: Int32, onTimeout: @escaping @Sendable () -> Void
    ) throws(SecureExecError) -> (@Sendable () async -> Int32) {
        try checkReady("file")
        // The timeout ends the caller's transfer at once: the caller may be
        // blocked on the data socket, not waiting for the answer yet.
        let reply = try connection.request(
            SE_REQ_FILE, step: "file", records: { _ in records }, fds: [fd],
            onReply: { result in
                if case .failure(let error) = result, error.code == .timeout { onTimeout() }
            })
        queue.asyncAfter(deadline: .now() + DispatchTimeInterval.clamped(configuration.limits.fileOperationTimeout)) {
            [connection] in
            connection.abandon(reply, with: SecureExecError(.timeout, "the file operation did not finish in time", step: "file"))
        }
        return {
            switch await reply.wait() {
            case .success(.fileDone(let errno)): return errno
            case .success: return EPROTO
            case .failure(let error) where error.code == .timeout: return ETIMEDOUT
            case .failure(let error) where error.code == .disposed: return EINTR
            case .failure: return EPROTO
            }
        }
    }

    // MARK: - Teardown

    /// Remembers an exposure so dispose closes it (closed at once if already disposing).
    func register(_ exposure: PortExposure) {
        let late = state.withLock { state -> Bool in
            guard state.phase == .ready else { return true }
            state.exposures.append(exposure)
            return false
        }
        if late { Task { await exposure.close() } }
    }

    /// The runtime was dropped without `dispose`: init is killed now (every
    /// guest dies with its pid namespace) and the rest is released in the
    /// background, cgroups included.
    func abandon() {
        guard state.withLock({ $0.phase == .ready }) else { return }
        _ = se_pidfd_signal(pidfd, SIGKILL)
        Task { await self.dispose() }
    }

    /// Ends every guest (SIGTERM, SIGKILL after the grace period), then init,
    /// and releases every descriptor and the uid range. Idempotent.
    func dispose() async {
        let task: Task<Void, Never> = state.withLock { state in
            if let task = state.disposal { return task }
            state.phase = .disposing
            let task = Task { await self.teardown() }
            state.disposal = task
            return task
        }
        await task.value
    }

    private func teardown() async {
        http.shutdown()
        await egress?.close()
        let exposures = state.withLock { state in
            defer { state.exposures = [] }
            return state.exposures
        }
        for exposure in exposures { await exposure.close() }
        let live = guests.runningRecords.filter(\.isRunning)
        if !live.isEmpty {
            try? connection.post(SE_REQ_SIGNAL_ALL, signal: SIGTERM)
            // Give them the grace period to exit by themselves, checking often;
            // a guest that ignores SIGTERM is killed below with everything else.
            let deadline = configuration.limits.terminationGrace.deadlineFromNow
            while ContinuousClock.now < deadline && live.contains(where: \.isRunning) {
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
        // Killing init ends the pid namespace: the kernel kills every guest
        // and init's exit is only reported after they are all gone.
        _ = se_pidfd_signal(pidfd, SIGKILL)
        await awaitInitExit()
        await connection.close()
        guests.endAll()
        if let cgroup { await Blocking.run(cgroup.remove) }
        SystemCall.close(netnsFD)
        SystemCall.close(pidfd)
        lease.release()
        state.withLock { $0.phase = .disposed }
    }

    private func awaitInitExit() async {
        var status: Int32 = 0
        if se_pidfd_reap(pidfd, &status) != 0 { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let source = DispatchSource.makeReadSource(fileDescriptor: pidfd, queue: queue)
            let box = DispatchSourceBox(source: source)
            let once = Once()
            source.setEventHandler { [pidfd] in
                var status: Int32 = 0
                if se_pidfd_reap(pidfd, &status) != 0, once.claim() { box.cancel() }
            }
            // Dispatch watches the pidfd until the cancel handler runs; only
            // then may teardown close it.
            source.setCancelHandler { continuation.resume() }
            source.resume()
        }
    }
}
