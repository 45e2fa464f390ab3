import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif



/// Which loopback address a guest listener must accept connections on.
public enum ListenerHost: Sendable, Hashable {
    /// 127.0.0.1 (a server bound to 0.0.0.0 or a dual-stack :: counts).
    case ipv4Loopback
    /// ::1 (a server bound to :: counts).
    case ipv6Loopback
    /// Any address.
    case any
}

/// A sandbox for untrusted Node.js code: real `node` processes in fresh
/// user, network, mount, pid, ipc, uts and cgroup namespaces, with only a
/// loopback interface and a minimal read-only root.
///
/// Create one with `create(...)` (or use `withNodeRuntime`), `spawn` guests in
/// it, reach their servers with `waitForListener` and `fetch`, and always end
/// it with `dispose()`, which ends guests gracefully (SIGTERM, then SIGKILL
/// after the grace period). A runtime dropped undisposed is ended at once
/// instead: its init is killed with SIGKILL and everything it held is
/// released in the background.
/// Every process in one runtime shares its loopback, filesystem and process
/// table, like processes on one machine.
///
/// A runtime is `Sendable`: its methods may be called from any task, at
/// the same time. Every async method honours its task's cancellation and
/// throws `.cancelled`, leaving nothing running that it started. Output
/// callbacks given to `spawn` run on a queue of that process's own: a slow
/// one slows only the reading of that process's output.
public final class NodeRuntime: Sendable {
    package let sandbox: Sandbox
    /// What the guest's root holds (`create(root:)`).
    public let root: RootImage
    /// The permissions this runtime was created with.
    public let permissions: Permissions
    /// The limits this runtime was created with.
    public let limits: Limits

    private init(sandbox: Sandbox, root: RootImage, permissions: Permissions, limits: Limits) {
        self.sandbox = sandbox
        self.root = root
        self.permissions = permissions
        self.limits = limits
    }

    /// A runtime dropped without `dispose()` still ends its sandbox: init is
    /// killed at once, and its descriptors, uid range and cgroups are
    /// released in the background.
    deinit {
        sandbox.abandon()
    }

    /// Builds a new sandbox and returns once it is ready to spawn guests.
    ///
    /// - Parameters:
    ///   - root: what the read-only root holds (see `RootImage`): `.standard`
    ///     (node, npm, a shell and common tools), `.minimal` (node only),
    ///     `.host` (the host's `/usr`) or `.directory(path)`.
    ///   - permissions: merged over the defaults (everything denied).
    ///   - limits: sizes and grace periods.
    ///   - mounts: host files or directories to show in the sandbox (read-only by default),
    ///     at any guest path but the sandbox's own (`/`, `/proc`, `/dev`, `/sys`, `/workspace`,
    ///     the runtime's files); stacked in the order given.
    ///   - workspace: a host project directory shown as `/workspace` (see `Workspace`);
    ///     nil for an empty workspace.
    ///   - files: files to write into the sandbox before `create` returns
    ///     (guest path → contents), e.g. an uploaded project.
    ///   - nodeModules: a host `node_modules` directory (a real directory, not a symlink), mounted read-only at
    ///     `/workspace/node_modules` where Node's resolution finds it from the workspace.
    ///   - node: the host's `node` binary to run (default: `SECURE_EXEC_NODE`, then PATH);
    ///     for `.standard` and `.minimal` only (the other images bring their own).
    ///   - logger: where SecureExec logs (it never bootstraps logging itself).
    /// - Throws: `.unsupportedHost` (not root, node or init missing, or what the root image
    ///   needs missing: busybox or npm for `.standard`; a `SECURE_EXEC_INIT`, `_ROOTFS`,
    ///   `_NODE` or `_BUSYBOX` variable naming a path that is not there), `.sandboxSetupFailed`
    ///   naming the step and errno, `.invalidArgument` for bad limits and for a host path that
    ///   is missing, passes through a symlink or sits on a filesystem that cannot be idmapped.
    ///   `.invalidArgument` also for a limit out of range (see `Limits.init`), more than
    ///   64 mounts, or a guest path of a mount that is not allowed; a `files` entry fails as
    ///   `writeFile` would, after the half-made runtime is disposed. `.invalidArgument` for a
    ///   `.directory` root that is not a directory without symlinks in its path or has no
    ///   executable `/usr/bin/node`, and for `node` given with `.host` or `.directory`.
    public static func create(
        root: RootImage = .standard, permissions: Permissions = Permissions(), limits: Limits = Limits(), mounts: [Mount] = [],
        workspace: Workspace? = nil, files: [String: [UInt8]] = [:], nodeModules: String? = nil, node: String? = nil,
        logger: Logger = Logger(label: "secure-exec")
    ) async throws(SecureExecError) -> NodeRuntime {
        let project = try workspace.map { workspace throws(SecureExecError) in try Self.validate(workspace) }
        var allMounts = mounts
        if let nodeModules {
            guard try HostMount.checkSource(nodeModules, role: "nodeModules", writable: false) else {
                throw SecureExecError(
                    .invalidArgument, "nodeModules \(nodeModules.debugDescription) is not a directory", step: "validate mount")
            }
            allMounts.append(Mount(host: nodeModules, guest: "/workspace/node_modules"))
        }
        // Each mount travels to init as a descriptor and a record of the first request.
        guard allMounts.count <= Self.maxMounts, allMounts.reduce(0, { $0 + $1.guest.utf8.count }) <= 16 << 10 else {
            throw SecureExecError(
                .invalidArgument, "at most \(Self.maxMounts) mounts, with guest paths of 16 KiB in all", step: "validate mount")
        }
        let hostMounts = try allMounts.map { mount throws(SecureExecError) in try Self.validate(mount) }
        try limits.validate(within: .current())
        if let egress = permissions.network.egress {
            try egress.validate()
            if let path = egress.outboundNetworkNamespace { SystemCall.close(try EgressGateway.openNetworkNamespace(path)) }
        }
        let configuration = SandboxConfiguration(
            root: root, permissions: permissions, limits: limits, mounts: hostMounts, workspace: project, node: node,
            logger: logger)
        try checkCancellation("create")
        let sandbox = try await SandboxLauncher.launch(configuration)
        let runtime = NodeRuntime(sandbox: sandbox, root: root, permissions: permissions, limits: limits)
        do throws(SecureExecError) {
            for (path, contents) in files.sorted(by: { $0.key < $1.key }) {
                try checkCancellation("create")
                try await runtime.writeFile(path, contents)
            }
            // Cancelled while the sandbox was being built: nothing is handed
            // back, so nothing is left running.
            try checkCancellation("create")
        } catch {
            await runtime.dispose()
            throw error
        }
        return runtime
    }

    /// Starts `code` as a new `node` process and returns as soon as it runs.
    ///
    /// The code is written to a file in the workspace and run by `node`;
    /// ES-module code (`import`) and CommonJS code (`require`) both work
    /// unchanged. The guest's environment is `environment` over a few safe
    /// defaults (PATH, HOME=/workspace, TMPDIR=/tmp): nothing of the host's.
    /// `onStdout`/`onStderr` get raw byte chunks in order as they are written,
    /// one at a time on a queue of this process's own: a slow callback slows
    /// the reading of this process's output (the guest then blocks on a full
    /// buffer), never the runtime's other work. Output past
    /// `Limits.outputBytesPerStream` is dropped (see `GuestProcess.stdoutTruncated`).
    /// - Parameters:
    ///   - code: the program's text, ES module or CommonJS.
    ///   - arguments: what the code sees in `process.argv.slice(2)`.
    ///   - environment: variables over the defaults (a name given here wins).
    ///   - workingDirectory: the guest's cwd (default `/workspace`).
    ///   - timeout: the process is killed when it runs longer and ends
    ///     `.timedOut` (a dev server usually has none: it runs until killed).
    ///   - onStdout: gets each chunk of stdout (nil: read and dropped).
    ///   - onStderr: gets each chunk of stderr (nil: read and dropped).
    /// - Throws: `.invalidArgument` for a non-positive `timeout`, a `workingDirectory`
    ///   that is not absolute and normalized, an environment name that is empty or
    ///   holds `=` or NUL, or NUL in a value or argument; `.disposed` after `dispose()`;
    ///   `.spawnFailed` with the step and errno when the sandbox could not start it.
    public func spawn(
        _ code: String, arguments: [String] = [], environment: [String: String] = [:],
        workingDirectory: String = "/workspace", timeout: Duration? = nil,
        onStdout: (@Sendable ([UInt8]) -> Void)? = nil, onStderr: (@Sendable ([UInt8]) -> Void)? = nil
    ) async throws(SecureExecError) -> GuestProcess {
        var request = SpawnRequest()
        request.code = code
        return try await launch(
            request, arguments: arguments, environment: environment, workingDirectory: workingDirectory,
            timeout: timeout, onStdout: onStdout, onStderr: onStderr)
    }

    /// Starts `node` on a file already in the sandbox (an uploaded project's
    /// entry, a mounted script), like `spawn` otherwise.
    ///
    /// `path` is a guest path (absolute, normalized); a relative or empty one
    /// is `.invalidArgument`. A file that does not exist makes node exit
    /// with an error on stderr, as it would on the host.
    ///
    /// - Throws: as `spawn`.
    public func spawnFile(
        _ path: String, arguments: [String] = [], environment: [String: String] = [:],
        workingDirectory: String = "/workspace", timeout: Duration? = nil,
        onStdout: (@Sendable ([UInt8]) -> Void)? = nil, onStderr: (@Sendable ([UInt8]) -> Void)? = nil
    ) async throws(SecureExecError) -> GuestProcess {
        try Self.validate(guestPath: path, name: "path")
        var request = SpawnRequest()
        request.entryFile = path
        return try await launch(
            request, arguments: arguments, environment: environment, workingDirectory: workingDirectory,
            timeout: timeout, onStdout: onStdout, onStderr: onStderr)
    }

    func launch(
        _ base: SpawnRequest, arguments: [String], environment: [String: String], workingDirectory: String,
        timeout: Duration?, nodeOptions: [String] = [], onStdout: (@Sendable ([UInt8]) -> Void)?,
        onStderr: (@Sendable ([UInt8]) -> Void)?
    ) async throws(SecureExecError) -> GuestProcess {
        if let timeout { try Self.validate(timeout: timeout, name: "timeout") }
        try Self.validate(guestPath: workingDirectory, name: "workingDirectory")
        try Self.checkCancellation("spawn")
        for (key, value) in environment {
            guard !key.isEmpty, !key.contains("="), !key.contains("\0"), !value.contains("\0") else {
                throw SecureExecError(.invalidArgument, "environment variable \(key.debugDescription) is not valid", step: "spawn")
            }
        }
        for argument in arguments where argument.contains("\0") {
            throw SecureExecError(.invalidArgument, "argument \(argument.debugDescription) contains NUL", step: "spawn")
        }
        var request = base
        request.arguments = arguments
        request.environment = environment
        request.workingDirectory = workingDirectory
        request.nodeOptions = nodeOptions
        request.onStdout = onStdout
        request.onStderr = onStderr
        request.timeout = timeout
        let record = try await sandbox.spawn(request)
        // Cancelled while init started it: end it rather than hand back a
        // process nobody asked for any more.
        if Task.isCancelled {
            await sandbox.terminate(record)
            throw SecureExecError(.cancelled, "spawn was cancelled; the process it started was ended", step: "spawn")
        }
        return GuestProcess(record: record, runtime: self)
    }

    /// Throws `.cancelled` when the calling task is cancelled.
    static func checkCancellation(_ step: String) throws(SecureExecError) {
        if Task.isCancelled { throw SecureExecError(.cancelled, "\(step) was cancelled", step: step) }
    }

    static func validate(guestPath path: String, name: String) throws(SecureExecError) {
        guard GuestPath.isNormalizedAbsolute(path) else {
            throw SecureExecError(
                .invalidArgument, "\(name) \(path.debugDescription) must be an absolute, normalized guest path",
                step: "validate \(name)")
        }
    }

    /// Whether a socket listens on `port` in the sandbox right now (a
    /// non-blocking `waitForListener`). Reads the kernel's socket table; never connects.
    ///
    /// `host` picks which loopback address must be served (`.any`: either).
    /// - Throws: `.invalidArgument` for a port outside 1-65535.
    public func findListener(port: Int, host: ListenerHost = .any) throws(SecureExecError) -> Bool {
        try Self.validate(port: port)
        return sandbox.probe.isListening(port: port, address: host)
    }

    /// Returns once a socket listens on `port` in the sandbox.
    ///
    /// The kernel's socket table is read; nothing connects, so the guest sees
    /// no probe. Fails at once with `.processExited` (carrying the exit and
    /// the tail of its stderr) when `process` has exited, or, with no
    /// `process` given, when no guest is left running; `.listenerTimeout`
    /// after `timeout`.
    ///
    /// The table is read every 1 ms for the first 200 ms, then every 5 ms.
    /// Cancelling the task ends the wait with `.cancelled`.
    /// - Throws: `.invalidArgument` for a port outside 1-65535 or a non-positive
    ///   `timeout`; `.processExited`; `.listenerTimeout`; `.disposed` when the
    ///   runtime is disposed meanwhile; `.cancelled`.
    public func waitForListener(
        port: Int, host: ListenerHost = .any, timeout: Duration = .seconds(10), process: GuestProcess? = nil
    ) async throws(SecureExecError) {
        try Self.validate(port: port)
        try Self.validate(timeout: timeout, name: "timeout")
        try await sandbox.waitForListener(port: port, address: host, timeout: timeout, watching: process?.record)
    }

    /// Ends every guest (SIGTERM, then SIGKILL after `limits.terminationGrace`)
    /// and the sandbox, and releases everything it held. Idempotent; safe to
    /// call from several tasks at once.
    ///
    /// Exposed ports are closed and pooled connections dropped first; fetches
    /// in flight fail. Later spawns, file operations, fetches and exposes fail
    /// with `.disposed`.
    public func dispose() async {
        await sandbox.dispose()
    }

    /// Host mounts one runtime may have (the runtime's own files take ~20 more of init's 128 descriptors).
    static let maxMounts = 64

    static func validate(_ mount: Mount) throws(SecureExecError) -> HostMount {
        try MountRules.checkGuestPath(mount.guest)
        _ = try HostMount.checkSource(mount.host, role: "host path", writable: !mount.readOnly)
        var attributes: HostMount.Attributes = [.noSetuid, .noDevices]
        if mount.readOnly { attributes.insert(.readOnly) }
        return HostMount(hostPath: mount.host, guestPath: mount.guest, attributes: attributes, idmapped: true)
    }

    static func validate(_ workspace: Workspace) throws(SecureExecError) -> Workspace {
        guard try HostMount.checkSource(workspace.host, role: "workspace", writable: workspace.mode == .readWrite) else {
            throw SecureExecError(
                .invalidArgument, "workspace \(workspace.host.debugDescription) is not a directory", step: "validate mount")
        }
        return workspace
    }

    static func validate(port: Int) throws(SecureExecError) {
        guard (1...65535).contains(port) else {
            throw SecureExecError(.invalidArgument, "port \(port) is out of range (1-65535)", step: "validate port")
        }
    }

    static func validate(timeout: Duration, name: String) throws(SecureExecError) {
        guard timeout > .zero else {
            throw SecureExecError(.invalidArgument, "\(name) must be positive, got \(timeout)", step: "validate \(name)")
        }
    }
}

/// Creates a runtime, runs `body` with it and disposes it afterwards, whether
/// `body` returns, throws or is cancelled.
///
/// Takes the same parameters as `NodeRuntime.create`, which it calls first;
/// `body` runs on the caller's actor (`isolation`), so it may touch the
/// caller's state and return a non-`Sendable` value. Cancelled before the
/// runtime is ready, it throws `.cancelled` and never runs `body`.
/// - Throws: what `create` throws, or whatever `body` throws (after disposing).
public func withNodeRuntime<Result>(
    root: RootImage = .standard, permissions: Permissions = Permissions(), limits: Limits = Limits(), mounts: [Mount] = [],
    workspace: Workspace? = nil, files: [String: [UInt8]] = [:], nodeModules: String? = nil, node: String? = nil,
    logger: Logger = Logger(label: "secure-exec"), isolation: isolated (any Actor)? = #isolation,
    _ body: (NodeRuntime) async throws -> Result
) async throws -> Result {
    let runtime = try await NodeRuntime.create(
        root: root, permissions: permissions, limits: limits, mounts: mounts, workspace: workspace, files: files,
        nodeModules: nodeModules, node: node,
        logger: logger)
    do {
        let result = try await body(runtime)
        await runtime.dispose()
        return result
    } catch {
        await runtime.dispose()
        throw error
    }
}
