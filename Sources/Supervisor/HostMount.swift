import CNamespaces

/// A host file or directory that appears in the guest's root.
///
/// The supervisor clones it into a detached mount (`open_tree`) with its own
/// credentials and sends the descriptor; init attaches it with `move_mount`.
/// So init never resolves a host path, and host directory permissions above
/// the source do not matter (only the source's own permissions do).
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

    package init(hostPath: String, guestPath: String, attributes: Attributes) {
        self.hostPath = hostPath
        self.guestPath = guestPath
        self.attributes = attributes
    }

    /// The detached mount's descriptor; the caller closes it.
    func detach() throws(SecureExecError) -> Int32 {
        var step: UnsafePointer<CChar>? = nil
        let fd = se_detached_mount(hostPath, attributes.rawValue, 1, &step)
        guard fd >= 0 else {
            throw SystemCall.failure(
                .sandboxSetupFailed, "could not mount \(hostPath) at \(guestPath)",
                step: step.map { String(cString: $0) } ?? "open_tree")
        }
        return fd
    }
}
