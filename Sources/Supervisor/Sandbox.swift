import CNamespaces
import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What one sandbox is built with. Validated by the public layer.
package struct SandboxConfiguration: Sendable {
    package var networkAllowed = false
    package var childProcessAllowed = false
    package var workspaceBytes: UInt64 = 128 << 20
    package var tmpBytes: UInt64 = 64 << 20
    package var node: String? = nil
    package var hostname = "sandbox"
    package var terminationGrace: Duration = .seconds(1)
    package var setupTimeout: Duration = .seconds(10)
    /// cgroup memory limit for the whole sandbox; nil for none.
    package var memoryBytes: UInt64? = 512 << 20
    /// cgroup pids limit (processes and threads) for the whole sandbox; nil for none.
    package var maxProcesses: Int? = 256
    /// RLIMIT_CPU per guest process, in seconds; nil for none.
    package var cpuSecondsPerProcess: UInt64? = 3600
    /// RLIMIT_NOFILE per guest process.
    package var openFiles: UInt64 = 4096
    /// Output bytes delivered per stream per process; the rest is dropped.
    package var outputBytesPerStream = 64 << 20
    /// How long one file operation (readFile, writeFile, ...) may take.
    package var fileOperationTimeout: Duration = .seconds(60)
    /// inotify instances and watches for the whole sandbox (its user
    /// namespace's own counts; the host's per-user limits apply on top).
    package var inotifyInstances = 128
    package var inotifyWatches = 131_072
    /// The caller's host mounts, already validated, in the order they stack.
    package var mounts: [HostMount] = []
    /// The host directory shown as /workspace; nil for a fresh tmpfs.
    package var workspace: WorkspaceSource? = nil
    package var logger = Logger(label: "secure-exec")

    package init() {}
}

/// What to start in a sandbox.
package struct SpawnRequest: Sendable {
    /// Code written to a fresh entry file in the workspace, or nil to run `arguments` as they are.
    package var code: String?
    package var arguments: [String] = []
    /// Options for node itself, before the entry (e.g. `--require`).
    package var nodeOptions: [String] = []
    /// A file to run instead of `code` (a guest path).
    package var entryFile: String?
    package var environment: [String: String] = [:]
    package var workingDirectory = "/workspace"
    package var onStdout: (@Sendable ([UInt8]) -> Void)?
    package var onStderr: (@Sendable ([UInt8]) -> Void)?
    /// Wall-clock limit; the guest is killed when it passes and ends `.timedOut`.
    package var timeout: Duration?

    package init() {}
}

/// One sandbox: an init process in fresh namespaces and the guests it runs.
///
/// Thread-safe. `dispose()` must be called to end it (it is idempotent); until
/// then init and its namespaces live. If the host process dies, init sees its
/// control socket hang up and exits, and the kernel ends every guest with it.
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
    /// Kept-alive HTTP connections to the guests' ports.
    package let http: GuestConnectionPool
    let configuration: SandboxConfiguration
    private let control: Mutex<ControlChannel?> = Mutex(nil)
    private let state = Mutex(State())

    private enum Phase { case starting, ready, disposing, disposed }

    private struct State {
        var phase = Phase.starting
        var ready: CheckedContinuation<Result<Void, SecureExecError>, Never>?
        var setupResult: Result<Void, SecureExecError>?
        var nextRequest: UInt32 = 1
        var pending: [UInt32: (GuestRecord, CheckedContinuation<Result<Int32, SecureExecError>, Never>)] = [:]
        var guests: [Int32: GuestRecord] = [:]
        var lastGuest: GuestRecord?
        var disposal: Task<Void, Never>?
        var exposures: [PortExposure] = []
        var pendingFiles: [UInt32: CheckedContinuation<Int32, Never>] = [:]
        var fileResults: [UInt32: Int32] = [:]
        /// File requests still waiting for init's answer (not timed out).
        var liveFiles: Set<UInt32> = []
        var initGone = false
    }

    private init(
        initPID: Int32, pidfd: Int32, netnsFD: Int32, lease: UIDRangeLease, cgroup: SandboxCgroup?,
        configuration: SandboxConfiguration
    ) {
        self.initPID = initPID
        self.pidfd = pidfd
        self.netnsFD = netnsFD
        self.lease = lease
        self.cgroup = cgroup
        self.http = GuestConnectionPool(dialer: NetnsDialer(netnsFD: netnsFD))
        self.configuration = configuration
        self.queue = DispatchQueue(label: "secure-exec.sandbox.\(initPID)")
    }

    package var dialer: NetnsDialer { NetnsDialer(netnsFD: netnsFD) }
    package var probe: ListenerProbe { ListenerProbe(initPID: initPID) }
    package var isDisposed: Bool { state.withLock { $0.phase == .disposing || $0.phase == .disposed } }

    // MARK: - Creation

    /// Builds a sandbox and waits until its init reports READY.
    package static func create(_ configuration: SandboxConfiguration) async throws(SecureExecError) -> Sandbox {
        guard geteuid() == 0 else {
            throw SecureExecError(
                .unsupportedHost,
                "SecureExec must run as root: each sandbox maps its own range of unprivileged host uids, which only root may write",
                step: "check privileges")
        }
        let assets = try RuntimeAssets.locate(node: configuration.node)
        let runtimeBinds = try bindList(node: assets.node)
        try MountRules.checkConflicts(configuration.mounts, runtime: runtimeBinds)
        let initFD = try InitImage.descriptor(for: assets.initProgram)
        let lease = try UIDRangeLease.acquire()
        // Every host path is opened and cloned now, before anything else
        // exists: a bad source (a symlink, a filesystem that cannot idmap)
        // fails here with nothing to undo but the lease.
        var mountRecords: [String] = []
        var mountFDs: [Int32] = []
        defer { mountFDs.forEach(SystemCall.close) }
        do throws(SecureExecError) {
            let guestID = lease.base + guestUID
            if let workspace = configuration.workspace {
                mountFDs.append(try workspace.mount.detach(guestID: guestID))
                mountRecords.append(InitRecord.make(SE_KEY_WORKSPACE, workspace.mode == .overlay ? "overlay" : "bind"))
            }
            for mount in runtimeBinds + configuration.mounts {
                mountFDs.append(try mount.detach(guestID: guestID))
                mountRecords.append(InitRecord.make(SE_KEY_MOUNT, mount.guestPath))
            }
        } catch {
            lease.release()
            throw error
        }
        let cgroup: SandboxCgroup?
        if configuration.memoryBytes != nil || configuration.maxProcesses != nil {
            do throws(SecureExecError) {
                cgroup = try SandboxCgroup.create(
                    name: "secure-exec-\(getpid())-\(lease.base >> 16)",
                    memoryBytes: configuration.memoryBytes ?? UInt64(Int64.max),
                    maxProcesses: configuration.maxProcesses ?? Int(Int32.max))
            } catch {
                lease.release()
                throw error
            }
        } else {
            cgroup = nil
        }
        func releaseEarly() {
            cgroup?.remove()
            lease.release()
        }

        var pair: [Int32] = [-1, -1]
        guard se_seqpacket_pair(&pair) == 0 else {
            lease.release()
            throw SystemCall.failure(.sandboxSetupFailed, "could not create the control socket", step: "socketpair")
        }
        let nullFD = open("/dev/null", O_RDWR | O_CLOEXEC)
        let rootfsFD = open(assets.skeleton, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer {
            SystemCall.close(nullFD)
            SystemCall.close(rootfsFD)
        }
        guard nullFD >= 0, rootfsFD >= 0 else {
            let error = SystemCall.failure(.sandboxSetupFailed, "could not open \(assets.skeleton) or /dev/null", step: "open")
            pair.forEach(SystemCall.close)
            releaseEarly()
            throw error
        }
        let cgroupFD = cgroup?.cloneTarget.map { open($0, O_RDONLY | O_DIRECTORY | O_CLOEXEC) } ?? -1
        defer { SystemCall.close(cgroupFD) }

        var pid: pid_t = 0
        var pidfd: Int32 = -1
        var syncFD: Int32 = -1
        var errorFD: Int32 = -1
        let cloned = se_clone_sandbox(
            initFD, pair[1], nullFD, cgroupFD, lease.base, lease.base, &pid, &pidfd, &syncFD, &errorFD)
        let cloneErrno = errno
        SystemCall.close(pair[1])
        guard cloned == 0 else {
            SystemCall.close(pair[0])
            releaseEarly()
            throw SystemCall.failure(
                .sandboxSetupFailed, "clone3 into new namespaces failed", step: "clone3", errno: cloneErrno)
        }

        // Until the child execs, a failure here must end and reap it.
        func abandonChild(_ error: SecureExecError) -> SecureExecError {
            _ = se_pidfd_signal(pidfd, SIGKILL)
            var status: Int32 = 0
            while se_pidfd_reap(pidfd, &status) == 0 { usleep(1000) }
            [pidfd, pair[0], syncFD, errorFD].forEach(SystemCall.close)
            releaseEarly()
            return error
        }

        var failedMap: UnsafePointer<CChar>? = nil
        if se_write_id_maps(pid, 0, lease.base, UIDRangeLease.rangeSize, &failedMap) != 0 {
            let name = failedMap.map { String(cString: $0) } ?? "id map"
            throw abandonChild(SystemCall.failure(.sandboxSetupFailed, "could not write \(name)", step: "write \(name)"))
        }
        do throws(SecureExecError) {
            try cgroup?.adopt(pid: pid)
        } catch {
            throw abandonChild(error)
        }
        var childStep: Int32 = 0
        var childErrno: Int32 = 0
        let released = se_release_sandbox(syncFD, errorFD, &childStep, &childErrno)
        syncFD = -1
        errorFD = -1
        if released != 0 {
            throw abandonChild(
                SystemCall.failure(
                    .sandboxSetupFailed, "the sandbox's first process failed before exec",
                    step: childStepName(childStep), errno: childErrno))
        }
        let netnsFD = open("/proc/\(pid)/ns/net", O_RDONLY | O_CLOEXEC)
        if netnsFD < 0 {
            throw abandonChild(SystemCall.failure(.sandboxSetupFailed, "could not open the sandbox's netns", step: "open netns"))
        }

        let sandbox = Sandbox(
            initPID: pid, pidfd: pidfd, netnsFD: netnsFD, lease: lease, cgroup: cgroup, configuration: configuration)
        let channel = ControlChannel(fd: pair[0], queue: sandbox.queue) { [weak sandbox] event in
            sandbox?.handle(event)
        }
        sandbox.control.withLock { $0 = channel }

        var records = [
            InitRecord.make(SE_KEY_WORKSPACE_BYTES, configuration.workspaceBytes),
            InitRecord.make(SE_KEY_TMP_BYTES, configuration.tmpBytes),
            InitRecord.make(SE_KEY_NETWORK, configuration.networkAllowed ? 1 : 0),
            InitRecord.make(SE_KEY_CHILD_PROCESS, configuration.childProcessAllowed ? 1 : 0),
            InitRecord.make(SE_KEY_GUEST_UID, guestUID),
            InitRecord.make(SE_KEY_GUEST_GID, guestUID),
            InitRecord.make(SE_KEY_HOSTNAME, configuration.hostname),
        ]
        records += sandbox.writableAreas.map { InitRecord.make(SE_KEY_WRITABLE, $0) }
        records += sysctls(configuration).map { InitRecord.make(SE_KEY_SYSCTL, $0) }
        // A file helper still running when the supervisor gave up ends itself.
        let (fileSeconds, fileFraction) = configuration.fileOperationTimeout.components
        records.append(InitRecord.make(SE_KEY_FILE_TIMEOUT, min(max(1, fileSeconds + (fileFraction > 0 ? 1 : 0)), 86400 * 366)))
        records += mountRecords
        // Init also watches this process through a pidfd: if a stray fork of
        // the host keeps the control socket open, init still ends with us.
        let supervisorPidfd = se_pidfd_open(getpid())
        defer { SystemCall.close(supervisorPidfd) }
        do throws(SecureExecError) {
            guard supervisorPidfd >= 0 else {
                throw SystemCall.failure(.sandboxSetupFailed, "could not open a pidfd of this process", step: "pidfd_open")
            }
            try channel.send(SE_REQ_CONFIG, records: records, fds: [supervisorPidfd, rootfsFD] + mountFDs)
            try await sandbox.awaitReady()
        } catch {
            await sandbox.dispose()
            throw error
        }
        configuration.logger.debug("sandbox ready", metadata: ["init": "\(pid)", "uid-base": "\(lease.base)"])
        return sandbox
    }

    /// node and exactly what its loader needs (read-only), and the device nodes.
    private static func bindList(node: String) throws(SecureExecError) -> [HostMount] {
        var files = [RuntimeFile(hostPath: node, guestPath: nodePath)]
        files += try SharedLibraryResolver.runtimeFiles(forExecutable: node)
        // The guest's loader then searches exactly as the host's does (including
        // ld.so.conf directories); only the files bound here exist to be found.
        if FileManager.default.fileExists(atPath: "/etc/ld.so.cache") {
            files.append(RuntimeFile(hostPath: "/etc/ld.so.cache", guestPath: "/etc/ld.so.cache"))
        }
        // The host's own runtime files are the administrator's, not a
        // tenant's: their symlinks (/lib -> usr/lib, libfoo.so.1 -> .so.1.2)
        // are resolved here, so the mount itself follows none.
        // A loader path with ".." ($ORIGIN/../lib) is bound where it leads:
        // init creates mount points without ever resolving "..".
        var mounts = files.map {
            HostMount(
                hostPath: realPath($0.hostPath), guestPath: GuestPath.lexicallyNormalized($0.guestPath),
                attributes: .runtime)
        }
        // Device nodes cannot be made in a user namespace; the host's are bound instead.
        for device in ["null", "zero", "full", "random", "urandom", "tty"] {
            mounts.append(HostMount(hostPath: "/dev/\(device)", guestPath: "/dev/\(device)", attributes: .device))
        }
        return mounts
    }

    /// Per-namespace kernel settings init makes in the sandbox before any guest runs.
    private static func sysctls(_ configuration: SandboxConfiguration) -> [String] {
        var settings = [
            "user/max_inotify_instances \(configuration.inotifyInstances)",
            "user/max_inotify_watches \(configuration.inotifyWatches)",
        ]
        // Guests never make namespaces (seccomp refuses); make the count say so too.
        for kind in ["user", "mnt", "net", "pid", "ipc", "uts", "cgroup", "time"] {
            settings.append("user/max_\(kind)_namespaces 0")
        }
        // Socket buffers of one connection stay a small share of the memory limit.
        if let memory = configuration.memoryBytes {
            let ceiling = max(UInt64(256 << 10), memory / 64)
            for name in ["tcp_rmem", "tcp_wmem"] {
                guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/\(name)", encoding: .utf8) else { continue }
                let values = text.split(whereSeparator: \.isWhitespace).compactMap { UInt64($0) }
                guard values.count == 3 else { continue }
                let top = min(values[2], ceiling)
                settings.append("net/ipv4/\(name) \(min(values[0], top)) \(min(values[1], top)) \(top)")
            }
        }
        return settings
    }

    private static func realPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    private static func childStepName(_ step: Int32) -> String {
        switch UInt32(step) {
        case SE_CHILD_STEP_WAIT.rawValue: return "wait for id maps"
        case SE_CHILD_STEP_SETGID.rawValue: return "setresgid"
        case SE_CHILD_STEP_SETUID.rawValue: return "setresuid"
        case SE_CHILD_STEP_SETGROUPS.rawValue: return "setgroups"
        case SE_CHILD_STEP_DUP.rawValue: return "dup2"
        case SE_CHILD_STEP_CLOSE_RANGE.rawValue: return "close_range"
        default: return "execveat init"
        }
    }

    private func awaitReady() async throws(SecureExecError) {
        let timeout = configuration.setupTimeout
        queue.asyncAfter(deadline: .now() + DispatchTimeInterval.clamped(timeout)) { [weak self] in
            self?.finishSetup(.failure(SecureExecError(.timeout, "the sandbox did not become ready within \(timeout)", step: "setup")))
        }
        let result = await withCheckedContinuation { continuation in
            let early: Result<Void, SecureExecError>? = state.withLock { state in
                if let result = state.setupResult { return result }
                state.ready = continuation
                return nil
            }
            if let early { continuation.resume(returning: early) }
        }
        try result.get()
    }

    private func finishSetup(_ result: Result<Void, SecureExecError>) {
        let waiter: CheckedContinuation<Result<Void, SecureExecError>, Never>? = state.withLock { state in
            guard state.setupResult == nil else { return nil }
            state.setupResult = result
            if case .success = result, state.phase == .starting { state.phase = .ready }
            defer { state.ready = nil }
            return state.ready
        }
        waiter?.resume(returning: result)
    }

    // MARK: - Events from init

    private func handle(_ event: InitEvent) {
        switch event {
        case .ready:
            finishSetup(.success(()))
        case .setupFailed(let step, let errno):
            finishSetup(
                .failure(SystemCall.failure(.sandboxSetupFailed, "building the sandbox failed", step: step, errno: errno)))
        case .spawned(let request, let pid):
            let entry = state.withLock { state -> (GuestRecord, CheckedContinuation<Result<Int32, SecureExecError>, Never>)? in
                guard let entry = state.pending.removeValue(forKey: request) else { return nil }
                entry.0.started(pid: pid)
                state.guests[pid] = entry.0
                state.lastGuest = entry.0
                return entry
            }
            entry?.1.resume(returning: .success(pid))
        case .spawnFailed(let request, let step, let errno):
            let entry = state.withLock { $0.pending.removeValue(forKey: request) }
            entry?.0.abandon()
            entry?.1.resume(
                returning: .failure(SystemCall.failure(.spawnFailed, "the guest could not be started", step: step, errno: errno)))
        case .exited(let pid, let status):
            guard let record = state.withLock({ $0.guests.removeValue(forKey: pid) }) else { return }
            record.ended(classify(waitStatus: status, of: record))
        case .signalFailed:
            break  // the guest had already exited; its exit event is on its way
        case .fileDone(let request, let errno):
            let waiter = state.withLock { state -> CheckedContinuation<Int32, Never>? in
                // A request that already timed out has been answered.
                guard state.liveFiles.remove(request) != nil else { return nil }
                let waiter = state.pendingFiles.removeValue(forKey: request)
                if waiter == nil { state.fileResults[request] = errno }
                return waiter
            }
            waiter?.resume(returning: errno)
        case .closed:
            initGone()
        }
    }

    /// Says which limit ended a guest, when one did.
    private func classify(waitStatus status: Int32, of record: GuestRecord) -> GuestTermination {
        let raw = GuestTermination(waitStatus: status)
        guard case .signaled(let signal) = raw else { return raw }
        if signal == SIGXCPU { return .cpuLimit }
        if signal == SIGKILL {
            if record.wasTimedOut { return .timedOut }
            if cgroup?.consumeOOMKill() == true { return .outOfMemory }
        }
        return raw
    }

    /// Init is gone (killed, crashed, or disposed): every guest died with it.
    private func initGone() {
        let (guests, pending) = state.withLock { state in
            state.initGone = true
            let guests = Array(state.guests.values)
            let pending = Array(state.pending.values)
            state.guests = [:]
            state.pending = [:]
            for waiter in state.pendingFiles.values { waiter.resume(returning: EINTR) }
            state.pendingFiles = [:]
            state.liveFiles = []
            return (guests, pending)
        }
        finishSetup(.failure(SecureExecError(.sandboxSetupFailed, "the sandbox's init exited during setup", step: "setup")))
        for record in guests { record.ended(.signaled(signal: SIGKILL)) }
        for (record, continuation) in pending {
            record.abandon()
            continuation.resume(returning: .failure(SecureExecError(.disposed, "the sandbox ended before the guest started")))
        }
    }

    // MARK: - Guests

    /// Starts a guest and returns once init reports its pid.
    package func spawn(_ request: SpawnRequest) async throws(SecureExecError) -> GuestRecord {
        let record = GuestRecord(queue: queue)
        let requestID: UInt32 = try state.withLock { state throws(SecureExecError) in
            guard state.phase == .ready, !state.initGone else {
                throw SecureExecError(.disposed, "the runtime has been disposed", step: "spawn")
            }
            defer { state.nextRequest &+= 1 }
            return state.nextRequest
        }

        // stdin is a socket pair, not a pipe: the host writes with MSG_NOSIGNAL,
        // so a guest that closes its stdin can never raise SIGPIPE in the host.
        var stdinPair: [Int32] = [-1, -1]
        guard se_stream_pair(&stdinPair) == 0 else {
            throw SystemCall.failure(.spawnFailed, "could not create the stdin socket", step: "socketpair stdin")
        }
        let stdin = (read: stdinPair[1], write: stdinPair[0])
        shutdown(stdin.read, Int32(SHUT_WR))
        shutdown(stdin.write, Int32(SHUT_RD))
        let stdout: (read: Int32, write: Int32)
        let stderr: (read: Int32, write: Int32)
        do {
            stdout = try SystemCall.pipe(step: "stdout pipe")
        } catch {
            [stdin.read, stdin.write].forEach(SystemCall.close)
            throw error
        }
        do {
            stderr = try SystemCall.pipe(step: "stderr pipe")
        } catch {
            [stdin.read, stdin.write, stdout.read, stdout.write].forEach(SystemCall.close)
            throw error
        }
        var guestEnds = [stdin.read, stdout.write, stderr.write]
        defer { guestEnds.forEach(SystemCall.close) }

        var records = [
            InitRecord.make(SE_KEY_EXE, Self.nodePath), InitRecord.make(SE_KEY_CWD, request.workingDirectory),
            InitRecord.make(SE_KEY_ARG, "node"),
        ]
        if let code = request.code {
            let memfd = se_memfd("guest-code")
            guard memfd >= 0 else {
                [stdin.write, stdout.read, stderr.read].forEach(SystemCall.close)
                throw SystemCall.failure(.spawnFailed, "could not hold the guest's code", step: "memfd_create")
            }
            guestEnds.append(memfd)
            do throws(SecureExecError) {
                try SystemCall.writeAll(memfd, Array(code.utf8), step: "write code")
            } catch {
                [stdin.write, stdout.read, stderr.read].forEach(SystemCall.close)
                throw error
            }
            let entry = "\(Self.workspace)/.secure-exec-entry-\(requestID).js"
            records.append(InitRecord.make(SE_KEY_ENTRY, entry))
            // Node picks ESM or CommonJS from the code itself, as it does for a typeless .js file.
            records += (["--experimental-detect-module"] + request.nodeOptions + [entry]).map { InitRecord.make(SE_KEY_ARG, $0) }
        } else if let file = request.entryFile {
            records += (["--experimental-detect-module"] + request.nodeOptions + [file]).map { InitRecord.make(SE_KEY_ARG, $0) }
        }
        records += request.arguments.map { InitRecord.make(SE_KEY_ARG, $0) }
        records.append(InitRecord.make(SE_KEY_RLIMIT, "\(RLIMIT_NOFILE.rawValue):\(configuration.openFiles):\(configuration.openFiles)"))
        records.append(InitRecord.make(SE_KEY_RLIMIT, "\(RLIMIT_CORE.rawValue):0:0"))
        if let cpu = configuration.cpuSecondsPerProcess {
            // Soft: SIGXCPU (reported as the CPU limit); hard a second later: SIGKILL.
            records.append(InitRecord.make(SE_KEY_RLIMIT, "\(RLIMIT_CPU.rawValue):\(cpu):\(cpu + 1)"))
        }
        var environment = ["PATH": "/usr/bin:/bin", "HOME": Self.workspace, "TMPDIR": "/tmp"]
        environment.merge(request.environment) { _, caller in caller }
        records += environment.sorted { $0.key < $1.key }.map { InitRecord.make(SE_KEY_ENV, "\($0.key)=\($0.value)") }

        record.attach(
            stdin: stdin.write, stdout: stdout.read, stderr: stderr.read,
            outputLimit: configuration.outputBytesPerStream, onStdout: request.onStdout, onStderr: request.onStderr)

        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Int32, SecureExecError>, Never>) in
            state.withLock { $0.pending[requestID] = (record, continuation) }
            do throws(SecureExecError) {
                try control.withLock { channel throws(SecureExecError) in
                    guard let channel else { throw SecureExecError(.disposed, "the runtime has been disposed") }
                    try channel.send(SE_REQ_SPAWN, id: requestID, records: records, fds: guestEnds)
                }
            } catch {
                if let entry = state.withLock({ $0.pending.removeValue(forKey: requestID) }) {
                    entry.0.abandon()
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        _ = try result.get()
        if let timeout = request.timeout {
            queue.asyncAfter(deadline: .now() + DispatchTimeInterval.clamped(timeout)) { [weak self, weak record] in
                guard let self, let record, record.isRunning else { return }
                record.markTimedOut()
                self.signal(record, SIGKILL)
            }
        }
        return record
    }

    /// Asks init for one file operation with `fd` attached and returns a
    /// function that waits for its result: 0, or the operation's errno. The
    /// caller moves data through its own end of `fd`'s pair meanwhile.
    ///
    /// When no answer has come after the configuration's file-operation
    /// timeout, the result is ETIMEDOUT and `onTimeout` runs (it should end
    /// the caller's data transfer); a late answer is then ignored.
    package func startFileRequest(
        records: [String], fd: Int32, onTimeout: @escaping @Sendable () -> Void
    ) throws(SecureExecError) -> (@Sendable () async -> Int32) {
        let requestID: UInt32 = try state.withLock { state throws(SecureExecError) in
            guard state.phase == .ready, !state.initGone else {
                throw SecureExecError(.disposed, "the runtime has been disposed", step: "file")
            }
            defer { state.nextRequest &+= 1 }
            state.liveFiles.insert(state.nextRequest)
            return state.nextRequest
        }
        queue.asyncAfter(deadline: .now() + DispatchTimeInterval.clamped(configuration.fileOperationTimeout)) {
            [weak self] in
            guard let self else { return }
            let (timedOut, waiter) = self.state.withLock { state -> (Bool, CheckedContinuation<Int32, Never>?) in
                guard state.liveFiles.remove(requestID) != nil else { return (false, nil) }
                let waiter = state.pendingFiles.removeValue(forKey: requestID)
                if waiter == nil { state.fileResults[requestID] = ETIMEDOUT }
                return (true, waiter)
            }
            guard timedOut else { return }
            onTimeout()
            waiter?.resume(returning: ETIMEDOUT)
        }
        try control.withLock { channel throws(SecureExecError) in
            guard let channel else { throw SecureExecError(.disposed, "the runtime has been disposed") }
            try channel.send(SE_REQ_FILE, id: requestID, records: records, fds: [fd])
        }
        return { [weak self] in
            guard let self else { return EINTR }
            return await withCheckedContinuation { continuation in
                let early: Int32? = self.state.withLock { state in
                    if let result = state.fileResults.removeValue(forKey: requestID) { return result }
                    if state.initGone { return EINTR }
                    state.pendingFiles[requestID] = continuation
                    return nil
                }
                if let early { continuation.resume(returning: early) }
            }
        }
    }

    /// Sends `signal` to a running guest; a guest that already exited is left alone.
    package func signal(_ record: GuestRecord, _ signal: Int32) {
        guard record.isRunning, record.pid > 0 else { return }
        _ = try? control.withLock { channel throws(SecureExecError) in
            try channel?.send(SE_REQ_SIGNAL, targetPID: record.pid, signal: signal)
        }
    }

    /// The guest to report on when `waitForListener` was not told which to watch.
    package var hasRunningGuest: Bool { state.withLock { !$0.guests.isEmpty || !$0.pending.isEmpty } }
    package var lastGuest: GuestRecord? { state.withLock { $0.lastGuest } }

    // MARK: - Teardown

    /// Ends every guest (SIGTERM, SIGKILL after the grace period), then init,
    /// and releases every descriptor and the uid range. Idempotent.
    package func dispose() async {
        let task: Task<Void, Never> = state.withLock { state in
            if let task = state.disposal { return task }
            state.phase = .disposing
            let task = Task { await self.teardown() }
            state.disposal = task
            return task
        }
        await task.value
    }

    /// Remembers an exposure so dispose closes it (closed at once if already disposing).
    package func register(_ exposure: PortExposure) {
        let late = state.withLock { state -> Bool in
            guard state.phase == .ready || state.phase == .starting else { return true }
            state.exposures.append(exposure)
            return false
        }
        if late { Task { await exposure.close() } }
    }

    private func teardown() async {
        http.shutdown()
        let exposures = state.withLock { state in
            defer { state.exposures = [] }
            return state.exposures
        }
        for exposure in exposures { await exposure.close() }
        let live = state.withLock { Array($0.guests.values) }.filter(\.isRunning)
        if !live.isEmpty {
            _ = try? control.withLock { channel throws(SecureExecError) in
                try channel?.send(SE_REQ_SIGNAL_ALL, signal: SIGTERM)
            }
            // Give them the grace period to exit by themselves, checking often;
            // a guest that ignores SIGTERM is killed below with everything else.
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: configuration.terminationGrace)
            while clock.now < deadline && live.contains(where: \.isRunning) {
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
        // Killing init ends the pid namespace: the kernel kills every guest
        // and init's exit is only reported after they are all gone.
        _ = se_pidfd_signal(pidfd, SIGKILL)
        await awaitInitExit()
        let channel = control.withLock { channel in
            defer { channel = nil }
            return channel
        }
        await channel?.close()
        initGone()
        cgroup?.remove()
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
