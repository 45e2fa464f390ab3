import CNamespaces

#if canImport(Glibc)
import Glibc
#endif

/// A host file or directory that appears in the guest's root.
///
/// The supervisor opens it without following any symlink (a symlink anywhere
/// in the path is refused), clones it into a detached mount (`open_tree`)
/// with its own credentials and sends the descriptor; init attaches it with
/// `move_mount`. So init never resolves a host path, what is mounted is
/// exactly what the caller named, and host directory permissions above the
/// source do not matter.
package struct HostMount: Sendable, Hashable {
    package struct Attributes: OptionSet, Sendable, Hashable {
        package let rawValue: UInt64
        package init(rawValue: UInt64) { self.rawValue = rawValue }

        package static let readOnly = Attributes(rawValue: UInt64(SE_MOUNT_READ_ONLY))
        package static let noSetuid = Attributes(rawValue: UInt64(SE_MOUNT_NO_SUID))
        package static let noDevices = Attributes(rawValue: UInt64(SE_MOUNT_NO_DEV))
        package static let noExec = Attributes(rawValue: UInt64(SE_MOUNT_NO_EXEC))

        /// node, its libraries: read-only, no setuid, no devices.
        package static let runtime: Attributes = [.readOnly, .noSetuid, .noDevices]
        /// A device node: usable, but nothing on it runs or gains privileges.
        package static let device: Attributes = [.noSetuid, .noExec]
    }

    package var hostPath: String
    package var guestPath: String
    package var attributes: Attributes
    /// Shown to the guest as its own (idmapped): the source's owner appears
    /// as the guest's uid and gid, and what the guest creates belongs on the
    /// host to that owner. The runtime's own files are not idmapped.
    package var idmapped: Bool

    package init(hostPath: String, guestPath: String, attributes: Attributes, idmapped: Bool = false) {
        self.hostPath = hostPath
        self.guestPath = guestPath
        self.attributes = attributes
        self.idmapped = idmapped
    }

    /// Opens `path` (O_PATH) without following a symlink anywhere in it; the caller closes it.
    ///
    /// - Throws: `.invalidArgument` naming the path when it is relative, does
    ///   not exist, or is or passes through a symlink.
    package static func openSource(_ path: String, role: String) throws(SecureExecError) -> Int32 {
        guard GuestPath.isNormalizedAbsolute(path) else {
            throw SecureExecError(
                .invalidArgument,
                "\(role) \(path.debugDescription) must be an absolute, normalized host path (no \".\", \"..\", \"//\" or trailing \"/\")",
                step: "validate mount")
        }
        let fd = se_open_no_symlinks(path)
        guard fd < 0 else { return fd }
        let code = errno
        let reason: String
        switch code {
        case ELOOP:
            reason = "is or passes through a symlink; SecureExec never follows symlinks in host paths, so name the real path"
        case ENOENT: reason = "does not exist"
        case ENOTDIR: reason = "has a component that is not a directory"
        default: reason = "cannot be opened: \(String(cString: strerror(code)))"
        }
        throw SecureExecError(.invalidArgument, "\(role) \(path.debugDescription) \(reason)", step: "validate mount", errno: code)
    }

    /// Whether the host path is a directory; checks it as `detach` will.
    ///
    /// - Parameter writable: the mount will be read-write (see `checkOwner`).
    package static func checkSource(_ path: String, role: String, writable: Bool) throws(SecureExecError) -> Bool {
        let fd = try openSource(path, role: role)
        defer { SystemCall.close(fd) }
        let info = try examine(fd, path: path, role: role)
        if writable { try checkOwner(info, path: path, role: role) }
        return (info.st_mode & S_IFMT) == S_IFDIR
    }

    private static func examine(_ fd: Int32, path: String, role: String) throws(SecureExecError) -> stat {
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw SystemCall.failure(.invalidArgument, "\(role) \(path.debugDescription) cannot be examined", step: "fstat")
        }
        return info
    }

    /// A read-write mount makes the guest its root's owner: it may change
    /// every file of that owner inside (a setuid one through a shared mmap
    /// included), and what it creates belongs to that owner on the host. For
    /// root that is too much to give by accident, so a read-write source
    /// must belong to another user and group. (Read-only, root-owned sources
    /// are allowed: the guest reads root's files in them, as the README says.)
    private static func checkOwner(_ info: stat, path: String, role: String) throws(SecureExecError) {
        guard info.st_uid != 0, info.st_gid != 0 else {
            throw SecureExecError(
                .invalidArgument,
                "\(role) \(path.debugDescription) is owned by root (uid \(info.st_uid), gid \(info.st_gid)); a read-write mount gives the guest its owner's rights and makes the guest's files that owner's, so give it an owner of its own (e.g. chown 1000:1000), or mount it read-only",
                step: "validate mount")
        }
    }

    /// The detached mount's descriptor; the caller closes it.
    ///
    /// - Parameter guestID: the host uid (and gid) the guest runs as, used
    ///   when the mount is idmapped.
    func detach(guestID: UInt32) throws(SecureExecError) -> Int32 {
        let source = try Self.openSource(hostPath, role: "host path")
        defer { SystemCall.close(source) }
        var step: UnsafePointer<CChar>? = nil
        var userns: Int32 = -1
        defer { SystemCall.close(userns) }
        if idmapped {
            let info = try Self.examine(source, path: hostPath, role: "host path")
            if !attributes.contains(.readOnly) { try Self.checkOwner(info, path: hostPath, role: "host path") }
            userns = se_idmap_userns(info.st_uid, info.st_gid, guestID, guestID, &step)
            guard userns >= 0 else {
                throw SystemCall.failure(
                    .sandboxSetupFailed, "could not make the id map for \(hostPath)",
                    step: step.map { String(cString: $0) } ?? "idmap")
            }
        }
        let fd = se_detached_mount(source, attributes.rawValue, 1, userns, &step)
        guard fd >= 0 else {
            let code = errno
            let stepName = step.map { String(cString: $0) } ?? "open_tree"
            if idmapped && stepName == "mount_setattr idmap" && (code == EINVAL || code == EPERM || code == EOPNOTSUPP) {
                throw SecureExecError(
                    .invalidArgument,
                    "the filesystem holding \(hostPath) cannot be idmapped, so it cannot be mounted in a sandbox (the guest would not own its files there): \(String(cString: strerror(code)))",
                    step: stepName, errno: code)
            }
            throw SystemCall.failure(.sandboxSetupFailed, "could not mount \(hostPath) at \(guestPath)", step: stepName, errno: code)
        }
        return fd
    }
}
