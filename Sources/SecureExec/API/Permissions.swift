/// What guests in a runtime may do beyond computing and using their files.
///
/// Everything is denied unless asked for; the values given to
/// `NodeRuntime.create(permissions:)` merge over these secure defaults.
public struct Permissions: Sendable, Hashable {
    /// Allowed or denied.
    public enum Access: Sendable, Hashable {
        /// Permitted.
        case allow
        /// Refused: the default of every permission.
        case deny
    }

    /// IPv4 and IPv6 sockets. Denied: creating one fails with EPERM (so a
    /// server's `listen()` errors). `.allow`: guests use the sandbox's own
    /// loopback; there is no route out of the sandbox or to the host.
    /// `.allow(egress:)`: loopback, plus outbound TCP to what the policy
    /// allows (README, "Egress").
    public var network: NetworkAccess
    /// New processes (fork, vfork, clone without CLONE_THREAD). Threads are
    /// always allowed. Allowed: `child_process` works inside the sandbox.
    public var childProcess: Access

    /// Everything denied unless given, e.g. `Permissions(network: .allow)`.
    public init(network: NetworkAccess = .deny, childProcess: Access = .deny) {
        self.network = network
        self.childProcess = childProcess
    }
}

/// Whether guests have IPv4 and IPv6 sockets, and where they may connect.
///
/// Written like `Permissions.Access` (`.allow`, `.deny`), plus
/// `.allow(egress:)` for outbound connections by allow-list.
public struct NetworkAccess: Sendable, Hashable {
    /// Whether guests may make IPv4 and IPv6 sockets at all.
    public let isAllowed: Bool
    /// What guests may reach outside the sandbox; nil: nothing (loopback only).
    public let egress: EgressPolicy?

    /// No IPv4 or IPv6 sockets: the default.
    public static let deny = NetworkAccess(isAllowed: false, egress: nil)
    /// Sockets on the sandbox's own loopback; no route out.
    public static let allow = NetworkAccess(isAllowed: true, egress: nil)
    /// Sockets on the sandbox's own loopback, and outbound TCP to the hosts
    /// `policy` allows, through SecureExec's DNS and connection gate.
    public static func allow(egress policy: EgressPolicy) -> NetworkAccess {
        NetworkAccess(isAllowed: true, egress: policy)
    }

    private init(isAllowed: Bool, egress: EgressPolicy?) {
        self.isAllowed = isAllowed
        self.egress = egress
    }
}

/// Sizes and times that bound a runtime. Every one has a bounded default;
/// the README lists them.
public struct Limits: Sendable, Hashable {
    /// Memory for the whole runtime (all its processes), enforced by a cgroup
    /// with swap off. Default 512 MiB. nil: no cgroup memory limit.
    /// A guest past it is killed by the kernel and ends `.outOfMemory`. At least 16 MiB.
    public var memoryBytes: Int?
    /// Processes and threads in the whole runtime (cgroup pids). Default 256.
    /// nil: no pids limit. (node itself runs about 10 threads.)
    /// At least 16; past it, `fork` and thread creation fail with EAGAIN.
    public var maxProcesses: Int?
    /// CPU time each process may use (RLIMIT_CPU). Default 1 hour. nil: none.
    /// Counted in whole seconds (a fraction rounds up), at least 1 s; past it the
    /// process is ended (SIGXCPU, then SIGKILL a second later) and ends `.cpuLimit`.
    public var cpuTimePerProcess: Duration?
    /// Open files per process (RLIMIT_NOFILE). Default 4096.
    /// At least 32; past it, opening fails with EMFILE.
    public var openFilesPerProcess: Int
    /// Size of the writable workspace (the guest's cwd, `/workspace`). Default 128 MiB.
    /// At least 1 MiB; a full workspace gives ENOSPC. Bounds an `.overlay`
    /// workspace's changes too, not a `.readWrite` one.
    public var workspaceBytes: Int
    /// Size of the guest's writable `/tmp`. Default 64 MiB.
    /// At least 1 MiB; a full `/tmp` gives ENOSPC.
    public var tmpBytes: Int
    /// Output bytes delivered per stream (stdout, stderr) per process. Past
    /// it, output is dropped and the process's `stdoutTruncated` or
    /// `stderrTruncated` says so. Default 64 MiB.
    public var outputBytesPerStream: Int
    /// How long `dispose()` waits after SIGTERM before it kills. Default 1 s.
    /// Zero kills at once; negative is `.invalidArgument`.
    public var terminationGrace: Duration
    /// inotify instances (one per watching thread or worker) for the whole
    /// runtime. Default 128. Counted in the sandbox's own user namespace and
    /// charged to its own host uid, never to root or another sandbox; the
    /// host's per-user limit (`fs.inotify.max_user_instances`) also applies.
    /// Past it, `inotify_init` fails with EMFILE. 1...1,048,576.
    public var inotifyInstances: Int
    /// inotify watches (one per watched file or directory) for the whole
    /// runtime. Default 131,072, enough for a dev server watching a large
    /// project; the host's `fs.inotify.max_user_watches` also applies.
    /// Past it, adding a watch fails with ENOSPC. 1...16,777,216.
    public var inotifyWatches: Int
    /// How long one file operation (`readFile`, `writeFile`, ...) may take
    /// before it fails with `.timeout`. Default 60 s.
    /// Must be positive.
    public var fileOperationTimeout: Duration

    /// The defaults each property lists; pass only the ones to change.
    ///
    /// `NodeRuntime.create` checks them before anything is made and throws
    /// `.invalidArgument` (step `limits`) for a value out of its range: memory
    /// below 16 MiB, fewer than 16 processes, CPU time below 1 s, fewer than
    /// 32 open files, a workspace or `/tmp` below 1 MiB, a negative output
    /// cap or grace period, inotify instances outside 1...1,048,576 or watches
    /// outside 1...16,777,216, a file-operation timeout that is not positive.
    public init(
        memoryBytes: Int? = 512 << 20, maxProcesses: Int? = 256, cpuTimePerProcess: Duration? = .seconds(3600),
        openFilesPerProcess: Int = 4096, workspaceBytes: Int = 128 << 20, tmpBytes: Int = 64 << 20,
        outputBytesPerStream: Int = 64 << 20, terminationGrace: Duration = .seconds(1),
        inotifyInstances: Int = 128, inotifyWatches: Int = 131_072, fileOperationTimeout: Duration = .seconds(60)
    ) {
        self.inotifyInstances = inotifyInstances
        self.inotifyWatches = inotifyWatches
        self.fileOperationTimeout = fileOperationTimeout
        self.memoryBytes = memoryBytes
        self.maxProcesses = maxProcesses
        self.cpuTimePerProcess = cpuTimePerProcess
        self.openFilesPerProcess = openFilesPerProcess
        self.workspaceBytes = workspaceBytes
        self.tmpBytes = tmpBytes
        self.outputBytesPerStream = outputBytesPerStream
        self.terminationGrace = terminationGrace
    }
}

/// A host file or directory made visible in the sandbox.
///
/// Read-only unless asked otherwise; never setuid, never device files. The
/// guest path may be any absolute, normalized path except the sandbox's own:
/// `/`, `/proc`, `/dev`, `/sys`, `/workspace` itself (use `Workspace`) and
/// paths that would cover the runtime's files (`/usr/bin/node`, its
/// libraries, `/etc/ld.so.cache`). Mounts stack in the order given, so
/// `/data` and then `/data/cache` nest.
///
/// The host path is opened without following any symlink: one anywhere in
/// it is `.invalidArgument`. The mount is idmapped: the guest sees the
/// files of the mount's root owner as its own, and what it creates there
/// belongs on the host to that owner (so a 0700 directory of any user
/// works, and a file one sandbox wrote opens read-write in the next).
/// SecureExec never changes host files' owners or modes.
public struct Mount: Sendable, Hashable {
    /// The host file or directory: an absolute, normalized path with no symlink
    /// anywhere in it, else `create` throws `.invalidArgument`.
    public var host: String
    /// Where the guest sees it: an absolute, normalized path (see above for the
    /// ones that are refused).
    public var guest: String
    /// True (the default): the guest cannot change it. False: its writes land
    /// on the host (refused for a directory owned by uid or gid 0).
    public var readOnly: Bool

    /// A mount of `host` at `guest`, read-only unless `readOnly` is false.
    public init(host: String, guest: String, readOnly: Bool = true) {
        self.host = host
        self.guest = guest
        self.readOnly = readOnly
    }
}

/// A host project directory shown as the guest's `/workspace`, by mount, not by copy.
///
/// Its `node_modules` comes with it. The path is opened without following
/// any symlink, and the files are idmapped as for `Mount`.
///
/// Without one, `/workspace` is an empty tmpfs of `Limits.workspaceBytes`.
public struct Workspace: Sendable, Hashable {
    /// Whether the guest's changes stay in the sandbox or reach the host.
    public enum Mode: Sendable, Hashable {
        /// The guest sees the project and may change it; its changes go to
        /// a private layer bounded by `Limits.workspaceBytes` and vanish
        /// with the sandbox. The host copy is never changed.
        case overlay
        /// Edits in place: what the guest writes lands in the host directory
        /// (owned by the directory's owner), and host edits reach a running
        /// guest (e.g. its `fs.watch`). Not bounded by `workspaceBytes`.
        case readWrite
    }

    /// The host project directory: an absolute, normalized path with no symlink
    /// anywhere in it.
    public var host: String
    /// How changes travel; default `.overlay`.
    public var mode: Mode

    /// The project at `host`, shown as an `.overlay` unless `mode` says otherwise.
    public init(host: String, mode: Mode = .overlay) {
        self.host = host
        self.mode = mode
    }
}
