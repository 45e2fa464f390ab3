/// What guests in a runtime may do beyond computing and using their files.
///
/// Everything is denied unless asked for; the values given to
/// `NodeRuntime.create(permissions:)` merge over these secure defaults.
public struct Permissions: Sendable, Hashable {
    /// Allowed or denied.
    public enum Access: Sendable, Hashable {
        case allow
        case deny
    }

    /// IPv4 and IPv6 sockets. Denied: creating one fails with EPERM (so a
    /// server's `listen()` errors). Allowed: guests use the sandbox's own
    /// loopback; there is still no route out of the sandbox or to the host.
    public var network: Access
    /// New processes (fork, vfork, clone without CLONE_THREAD). Threads are
    /// always allowed. Allowed: `child_process` works inside the sandbox.
    public var childProcess: Access

    public init(network: Access = .deny, childProcess: Access = .deny) {
        self.network = network
        self.childProcess = childProcess
    }
}

/// Sizes and times that bound a runtime. Defaults are documented in the README.
public struct Limits: Sendable, Hashable {
    /// Size of the writable workspace (the guest's cwd, `/workspace`). Default 128 MiB.
    public var workspaceBytes: Int
    /// Size of the guest's writable `/tmp`. Default 64 MiB.
    public var tmpBytes: Int
    /// How long `dispose()` waits after SIGTERM before it kills. Default 1 s.
    public var terminationGrace: Duration

    public init(workspaceBytes: Int = 128 << 20, tmpBytes: Int = 64 << 20, terminationGrace: Duration = .seconds(1)) {
        self.workspaceBytes = workspaceBytes
        self.tmpBytes = tmpBytes
        self.terminationGrace = terminationGrace
    }
}
