/// Where host mounts may go in the guest's root, checked before any sandbox exists.
package enum MountRules {
    /// Areas the sandbox builds itself; nothing may be mounted at or below them.
    static let machinery = ["/proc", "/dev", "/sys"]

    /// Checks one mount's guest path on its own: absolute, normalized, not
    /// the root, not the sandbox's machinery, not `/workspace` itself.
    package static func checkGuestPath(_ path: String) throws(SecureExecError) {
        guard GuestPath.isNormalizedAbsolute(path) else {
            throw SecureExecError(
                .invalidArgument, "guest path \(path.debugDescription) must be an absolute, normalized path",
                step: "validate mount")
        }
        guard path != "/" else {
            throw SecureExecError(.invalidArgument, "a host path cannot be mounted over the guest's root", step: "validate mount")
        }
        if let area = machinery.first(where: { GuestPath.isInside(path, area: $0) }) {
            throw SecureExecError(
                .invalidArgument, "guest path \(path) would hide the sandbox's own \(area)", step: "validate mount")
        }
        guard path != "/workspace" else {
            throw SecureExecError(
                .invalidArgument, "mount a project at /workspace with `workspace:` (overlay or read-write), not as a mount",
                step: "validate mount")
        }
    }

    /// Checks the caller's mounts against each other and against the
    /// runtime's own files (node, its libraries, the loader cache, the root
    /// image's tools and symlinks), given as guest paths.
    package static func checkConflicts(_ mounts: [HostMount], runtime: [String]) throws(SecureExecError) {
        var seen: Set<String> = []
        for mount in mounts {
            guard seen.insert(mount.guestPath).inserted else {
                throw SecureExecError(
                    .invalidArgument, "guest path \(mount.guestPath) is mounted twice", step: "validate mount")
            }
            for file in runtime {
                if GuestPath.isInside(file, area: mount.guestPath) {
                    throw SecureExecError(
                        .invalidArgument,
                        "guest path \(mount.guestPath) would hide the runtime's \(file); choose another path",
                        step: "validate mount")
                }
                if GuestPath.isInside(mount.guestPath, area: file) {
                    throw SecureExecError(
                        .invalidArgument, "guest path \(mount.guestPath) lies inside the runtime's file \(file)",
                        step: "validate mount")
                }
            }
        }
    }
}

extension Workspace {
    /// The detached mount init builds /workspace from.
    var mount: HostMount {
        HostMount(
            hostPath: host, guestPath: Sandbox.workspace,
            attributes: mode == .overlay ? [.readOnly, .noSetuid, .noDevices] : [.noSetuid, .noDevices], idmapped: true)
    }
}
