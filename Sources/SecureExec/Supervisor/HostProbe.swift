import CNamespaces
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Facts about this host that decide whether it can run sandboxes, read
/// without changing anything (the end-to-end check is a real sandbox, made
/// by the caller).
package enum HostProbe {
    package struct Fact: Sendable {
        package var name: String
        package var ok: Bool
        package var required: Bool
        package var detail: String
        package var fix: String?
    }

    package static func facts() -> [Fact] {
        var facts: [Fact] = []
        let root = geteuid() == 0
        facts.append(
            Fact(
                name: "root", ok: root, required: true, detail: root ? "running as root" : "running as uid \(geteuid())",
                fix: root ? nil : "run as root: each sandbox maps a private range of host uids, which only root may do"))

        let maxNamespaces = readTrimmed("/proc/sys/user/max_user_namespaces").flatMap { Int($0) }
        let userns = (maxNamespaces ?? 1) > 0
        var usernsDetail = "max_user_namespaces=\(maxNamespaces.map(String.init) ?? "unknown")"
        if let restrict = readTrimmed("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") {
            usernsDetail += ", apparmor_restrict_unprivileged_userns=\(restrict) (does not apply to root)"
        }
        facts.append(
            Fact(
                name: "user namespaces", ok: userns, required: true, detail: usernsDetail,
                fix: userns ? nil : "sysctl -w user.max_user_namespaces=15000"))

        let seccompActions = readTrimmed("/proc/sys/kernel/seccomp/actions_avail") ?? ""
        let seccomp = seccompActions.contains("errno")
        facts.append(
            Fact(
                name: "seccomp", ok: seccomp, required: true,
                detail: seccomp ? "filter actions: \(seccompActions)" : "seccomp filters are not available",
                fix: seccomp ? nil : "use a kernel built with CONFIG_SECCOMP_FILTER"))

        let pidfd = se_pidfd_open(getpid())
        if pidfd >= 0 { close(pidfd) }
        facts.append(
            Fact(
                name: "pidfd", ok: pidfd >= 0, required: true,
                detail: pidfd >= 0 ? "pidfd_open works" : "pidfd_open failed: \(String(cString: strerror(errno)))",
                fix: pidfd >= 0 ? nil : "use Linux 5.3 or newer"))

        var kernel = utsname()
        uname(&kernel)
        let release = withUnsafeBytes(of: kernel.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        let recent = numbers.count == 2 && (numbers[0], numbers[1]) >= (5, 12)
        facts.append(
            Fact(
                name: "kernel", ok: recent, required: true,
                detail: "Linux \(release) (clone3, open_tree/move_mount and mount_setattr need 5.12+)",
                fix: recent ? nil : "use Linux 5.12 or newer"))

        let hierarchy = CgroupHierarchy.current()
        for controller in ["memory", "pids"] {
            let parent = hierarchy.parent(for: controller)
            facts.append(
                Fact(
                    name: "cgroup \(controller)", ok: parent != nil, required: false,
                    detail: parent.map { "cgroup v\($0.version) at \($0.path)" }
                        ?? "not available to this process (memory and pids limits cannot be enforced)",
                    fix: parent == nil
                        ? "on cgroup v2, run the supervisor in a cgroup whose cgroup.subtree_control enables +\(controller) (e.g. a systemd unit with Delegate=yes); or create runtimes with Limits(memoryBytes: nil, maxProcesses: nil)"
                        : nil))
        }
        return facts
    }

    private static func readTrimmed(_ path: String) -> String? {
        (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
