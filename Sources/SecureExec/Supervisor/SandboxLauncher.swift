import CNamespaces
import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Builds sandboxes: the create handshake of ARCHITECTURE.md, "Creating a
/// sandbox".
///
/// Concurrency: everything up to init's exec blocks (the ELF walk, opening
/// and idmapping host paths, the clone child's id maps), so it runs on a
/// Dispatch thread, never on the cooperative pool; waiting for READY is an
/// await. Until the `Sandbox` exists, every resource taken registers its
/// undo step in one `Rollback`; after that, `Sandbox.dispose` is the undo.
enum SandboxLauncher {
    /// Builds a sandbox and waits until its init reports READY.
    static func launch(_ configuration: SandboxConfiguration) async throws(SecureExecError) -> Sandbox {
        guard geteuid() == 0 else {
            throw SecureExecError(
                .unsupportedHost,
                "SecureExec must run as root: each sandbox maps its own range of unprivileged host uids, which only root may write",
                step: "check privileges")
        }
        let started = try await Blocking.run { () throws(SecureExecError) in try start(configuration) }
        defer { started.configFDs.forEach(SystemCall.close) }
        var egress: EgressGateway? = nil
        if let prepared = started.egress, let policy = configuration.permissions.network.egress {
            do throws(SecureExecError) {
                egress = try await EgressGateway.start(prepared, policy: policy, logger: configuration.logger)
            } catch {
                await Sandbox(started, configuration: configuration, egress: nil).dispose()
                throw error
            }
        }
        let sandbox = Sandbox(started, configuration: configuration, egress: egress)
        do throws(SecureExecError) {
            try await sandbox.connection.configure(
                records: started.configRecords, fds: started.configFDs, queue: sandbox.queue,
                timeout: configuration.setupTimeout)
        } catch {
            await sandbox.dispose()
            throw error
        }
        configuration.logger.debug("sandbox ready", metadata: ["init": "\(started.pid)", "uid-base": "\(started.lease.base)"])
        return sandbox
    }

    /// A sandbox's first process, running init and waiting for its configuration.
    struct Started: Sendable {
        let pid: Int32
        let pidfd: Int32
        let netnsFD: Int32
        let controlFD: Int32
        let lease: UIDRangeLease
        let cgroup: SandboxCgroup?
        /// The egress gateway's sockets in the sandbox, when the policy allows egress.
        let egress: EgressGateway.Prepared?
        /// The first request: records, and the descriptors it carries (closed once sent).
        let configRecords: [String]
        let configFDs: [Int32]
    }

    /// Everything up to init's exec, blocking; undone in full on failure.
    private static func start(_ configuration: SandboxConfiguration) throws(SecureExecError) -> Started {
        let rollback = Rollback()
        do throws(SecureExecError) {
            let started = try start(configuration, rollback: rollback)
            rollback.disarm()
            return started
        } catch {
            rollback.run()
            throw error
        }
    }

    private static func start(_ configuration: SandboxConfiguration, rollback: Rollback) throws(SecureExecError) -> Started {
        let assets = try RuntimeAssets.locateSandboxFiles()
        // The image's files (for .standard and .minimal with the host's
        // library directories for native addons, HostLibraryView) and the
        // host's time zone as this root shows it.
        var root = try GuestRoot.assemble(configuration.root, node: configuration.node)
        let timeZone = root.timeZone(besides: configuration.mounts)
        if let zoneFile = timeZone?.file { root.binds.append(zoneFile) }
        try MountRules.checkConflicts(configuration.mounts, runtime: root.guestPaths)
        let initFD = try InitImage.descriptor(for: assets.initProgram)
        let lease = try UIDRangeLease.acquire()
        rollback.add(lease.release)

        // Every host path is opened and cloned now, before the sandbox
        // exists: a bad source (a symlink, a filesystem that cannot idmap)
        // fails here with little to undo.
        var configFDs: [Int32] = []
        rollback.add { configFDs.forEach(SystemCall.close) }
        var mountRecords: [String] = []
        let guestID = lease.base + Sandbox.guestUID
        if let base = root.base {
            configFDs.append(try base.detach(guestID: guestID))
            mountRecords.append(InitProtocol.rootBaseRecord)
        }
        mountRecords += root.symlinks.map(InitProtocol.symlinkRecord)
        if let workspace = configuration.workspace {
            configFDs.append(try workspace.mount.detach(guestID: guestID))
            mountRecords.append(InitProtocol.workspaceRecord(workspace.mode))
        }
        for mount in root.binds + configuration.mounts {
            configFDs.append(try mount.detach(guestID: guestID))
            mountRecords.append(InitProtocol.mountRecord(mount.guestPath))
        }

        let limits = configuration.limits
        var cgroup: SandboxCgroup?
        if limits.memoryBytes != nil || limits.maxProcesses != nil {
            let made = try SandboxCgroup.create(
                name: "secure-exec-\(getpid())-\(lease.base >> 16)",
                memoryBytes: limits.memoryBytes.map { UInt64($0) } ?? UInt64(Int64.max),
                maxProcesses: limits.maxProcesses ?? Int(Int32.max))
            rollback.add(made.remove)
            cgroup = made
            for view in made.guestViews {
                configFDs.append(try view.detach(guestID: guestID))
                mountRecords.append(InitProtocol.mountRecord(view.guestPath))
            }
        }

        var pair: [Int32] = [-1, -1]
        guard se_seqpacket_pair(&pair) == 0 else {
            throw SystemCall.failure(.sandboxSetupFailed, "could not create the control socket", step: "socketpair")
        }
        let controlFD = pair[0]
        rollback.add { SystemCall.close(controlFD) }
        defer { SystemCall.close(pair[1]) }
        let nullFD = try open("/dev/null", O_RDWR)
        defer { SystemCall.close(nullFD) }
        // Init's first descriptors: a pidfd of this process (init also ends
        // when a stray fork of the host keeps the control socket open), then
        // the root skeleton, then the mounts.
        let supervisorPidfd = se_pidfd_open(getpid())
        guard supervisorPidfd >= 0 else {
            throw SystemCall.failure(.sandboxSetupFailed, "could not open a pidfd of this process", step: "pidfd_open")
        }
        configFDs.insert(supervisorPidfd, at: 0)
        configFDs.insert(try open(assets.skeleton, O_RDONLY | O_DIRECTORY), at: 1)
        let cgroupFD = try cgroup?.cloneTarget.map { path throws(SecureExecError) in try open(path, O_RDONLY | O_DIRECTORY) } ?? -1
        defer { SystemCall.close(cgroupFD) }

        var pid: pid_t = 0
        var pidfd: Int32 = -1
        var syncFD: Int32 = -1
        var errorFD: Int32 = -1
        guard se_clone_sandbox(initFD, pair[1], nullFD, cgroupFD, lease.base, lease.base, &pid, &pidfd, &syncFD, &errorFD) == 0
        else {
            throw SystemCall.failure(.sandboxSetupFailed, "clone3 into new namespaces failed", step: "clone3")
        }
        // Until the child execs, a failure must end and reap it.
        rollback.add {
            _ = se_pidfd_signal(pidfd, SIGKILL)
            var status: Int32 = 0
            while se_pidfd_reap(pidfd, &status) == 0 { usleep(1000) }
            [pidfd, syncFD, errorFD].forEach(SystemCall.close)
        }

        var failedMap: UnsafePointer<CChar>? = nil
        if se_write_id_maps(pid, 0, lease.base, UIDRangeLease.rangeSize, &failedMap) != 0 {
            let name = failedMap.map { String(cString: $0) } ?? "id map"
            throw SystemCall.failure(.sandboxSetupFailed, "could not write \(name)", step: "write \(name)")
        }
        try cgroup?.adopt(pid: pid)
        var childStep: Int32 = 0
        var childErrno: Int32 = 0
        let released = se_release_sandbox(syncFD, errorFD, &childStep, &childErrno)
        // se_release_sandbox closes both, whatever it returns.
        syncFD = -1
        errorFD = -1
        if released != 0 {
            throw SystemCall.failure(
                .sandboxSetupFailed, "the sandbox's first process failed before exec",
                step: InitProtocol.childStepName(childStep), errno: childErrno)
        }
        let netnsFD = try open("/proc/\(pid)/ns/net", O_RDONLY, step: "open netns")
        rollback.add { SystemCall.close(netnsFD) }
        // Before any guest runs: its first connection out already meets the gateway.
        let egress = try configuration.permissions.network.egress.map { policy throws(SecureExecError) in
            try EgressGateway.prepare(netnsFD: netnsFD, policy: policy)
        }
        if let egress { rollback.add(egress.close) }

        let records = InitProtocol.configRecords(
            configuration, mounts: mountRecords, tcpMemory: .host(),
            localtime: timeZone?.link)
        return Started(
            pid: pid, pidfd: pidfd, netnsFD: netnsFD, controlFD: controlFD, lease: lease, cgroup: cgroup, egress: egress,
            configRecords: records, configFDs: configFDs)
    }

    private static func open(_ path: String, _ flags: Int32, step: String = "open") throws(SecureExecError) -> Int32 {
        let fd = Glibc.open(path, flags | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCall.failure(.sandboxSetupFailed, "could not open \(path)", step: step) }
        return fd
    }
}

/// Undo steps of something half-built, run newest first when a later step
/// fails. Used by one thread.
final class Rollback {
    private var steps: [() -> Void] = []

    func add(_ step: @escaping () -> Void) { steps.append(step) }

    /// Undoes every step taken so far.
    func run() {
        steps.reversed().forEach { $0() }
        steps = []
    }

    /// Everything succeeded: nothing is undone.
    func disarm() { steps = [] }
}

/// Runs blocking work (file-system walks, waits on a child, sleeps) on a
/// Dispatch thread, so it never holds one of the cooperative pool's few
/// threads that every task shares.
enum Blocking {
    static func run<T: Sendable>(_ work: @escaping @Sendable () throws(SecureExecError) -> T) async throws(SecureExecError) -> T {
        let result: Result<T, SecureExecError> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: Result(catching: work)) }
        }
        return try result.get()
    }

    static func run(_ work: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                work()
                continuation.resume()
            }
        }
    }
}
