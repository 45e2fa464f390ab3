import Logging

/// What one sandbox is built with: the caller's permissions and limits
/// (validated by `NodeRuntime.create`) and the host paths it shows.
struct SandboxConfiguration: Sendable {
    /// What the read-only root holds besides SecureExec's own files.
    var root = RootImage.standard
    var permissions = Permissions()
    var limits = Limits()
    /// The caller's host mounts, already validated, in the order they stack.
    var mounts: [HostMount] = []
    /// The host directory shown as /workspace; nil for a fresh tmpfs.
    var workspace: Workspace? = nil
    /// The host's node to run; nil to find it (`RuntimeAssets`).
    var node: String? = nil
    var hostname = "sandbox"
    var setupTimeout: Duration = .seconds(10)
    var logger = Logger(label: "secure-exec")

    /// The areas file operations may touch: the workspace, /tmp and read-write mounts.
    var writableAreas: [String] {
        [Sandbox.workspace, "/tmp"] + mounts.filter { !$0.attributes.contains(.readOnly) }.map(\.guestPath)
    }
}

/// What to start in a sandbox.
struct SpawnRequest: Sendable {
    /// A program to run (a guest path) instead of node; `arguments` follow
    /// it as they are, and `code`, `entryFile` and `nodeOptions` do not apply.
    var executable: String?
    /// Code written to a fresh entry file in the workspace, or nil to run `arguments` as they are.
    var code: String?
    var arguments: [String] = []
    /// Options for node itself, before the entry (e.g. `--require`).
    var nodeOptions: [String] = []
    /// A file to run instead of `code` (a guest path).
    var entryFile: String?
    var environment: [String: String] = [:]
    var workingDirectory = Sandbox.workspace
    var onStdout: (@Sendable ([UInt8]) -> Void)?
    var onStderr: (@Sendable ([UInt8]) -> Void)?
    /// Wall-clock limit; the guest is killed when it passes and ends `.timedOut`.
    var timeout: Duration?
}
