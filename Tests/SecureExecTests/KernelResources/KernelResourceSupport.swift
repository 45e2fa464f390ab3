import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

// Helpers for the kernel-resource suites (KernelResources/*.swift): where a
// sandbox lives on the host (its init, its host uid range, its cgroups),
// host-side counts (inotify instances, TCP memory), uid slot files and
// leftover records. Every name starts with `Kernel` so the other suites'
// helpers never collide with these.

/// /proc and /sys readings of host processes.
enum KernelProc {
    /// A whole-number file (a cgroup counter), trimmed.
    static func readNumber(_ path: String) -> Int? {
        HostCensus.readText(path).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// The real uid of `pid` on the host, from the `Uid:` line of its status.
    static func hostUID(of pid: Int32) -> UInt32? {
        guard let status = HostCensus.readText("/proc/\(pid)/status") else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("Uid:") {
            return line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first.flatMap { UInt32($0) }
        }
        return nil
    }

    /// The network namespace of `pid` ("net:[4026531840]").
    static func netNamespace(of pid: Int32) -> String? {
        HostCensus.readLink("/proc/\(pid)/ns/net")
    }

    /// The directory of `pid`'s cgroup for `controller` ("memory", "pids"): the
    /// v1 hierarchy that has it, else the unified (v2) one. Resolved from
    /// /proc/<pid>/cgroup and this process's mount table (the mount's root is
    /// taken off the cgroup path, as for a cgroup namespace).
    static func cgroupDirectory(of pid: Int32, controller: String) -> (path: String, version: Int)? {
        guard let membership = HostCensus.readText("/proc/\(pid)/cgroup"), let mounts = HostCensus.readText("/proc/self/mountinfo") else { return nil }
        var v1Mount: (root: String, point: String)?
        var v2Mount: (root: String, point: String)?
        for line in mounts.split(separator: "\n") {
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { continue }
            let before = halves[0].split(separator: " ")
            let after = halves[1].split(separator: " ")
            guard before.count > 4, after.count > 2 else { continue }
            let mount = (root: String(before[3]), point: String(before[4]))
            if after[0] == "cgroup2", v2Mount == nil {
                v2Mount = mount
            } else if after[0] == "cgroup", after[2].split(separator: ",").contains(Substring(controller)) {
                v1Mount = mount
            }
        }
        func join(_ mount: (root: String, point: String), _ path: String) -> String {
            var relative = path
            if mount.root != "/", relative.hasPrefix(mount.root) { relative = String(relative.dropFirst(mount.root.count)) }
            return relative == "/" || relative.isEmpty ? mount.point : mount.point + relative
        }
        var unified: String?
        for line in membership.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            if parts[1].isEmpty {
                unified = String(parts[2])
            } else if parts[1].split(separator: ",").contains(Substring(controller)), let v1Mount {
                return (join(v1Mount, String(parts[2])), 1)
            }
        }
        if let unified, let v2Mount { return (join(v2Mount, unified), 2) }
        return nil
    }

    /// Host-wide TCP memory in pages: the `mem` of the `TCP:` line of /proc/net/sockstat.
    static func tcpMemoryPages() -> Int? {
        guard let text = HostCensus.readText("/proc/net/sockstat") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("TCP:") {
            let fields = line.split(separator: " ")
            if let index = fields.firstIndex(of: "mem"), index + 1 < fields.count { return Int(fields[index + 1]) }
        }
        return nil
    }
}

/// Where a runtime's sandbox lives on the host.
enum KernelSandbox {
    /// The first host uid of the sandbox's range, as the guest's own
    /// /proc/self/uid_map shows it ("0 <host base> 65536").
    static func uidBase(of runtime: NodeRuntime) async throws -> UInt32 {
        let guest = try await runtime.runGuest(#"process.stdout.write(require("fs").readFileSync("/proc/self/uid_map", "utf8"))"#)
        try #require(guest.termination == .exited(0), "reading uid_map failed: \(guest.stderr)")
        let fields = guest.stdout.split(whereSeparator: \.isWhitespace)
        guard fields.count == 3, fields[0] == "0", let base = UInt32(fields[1]), fields[2] == "65536" else {
            throw TestFailure("unexpected uid_map in the guest: \(guest.stdout.debugDescription)")
        }
        return base
    }

    /// The sandbox init running as host uid `base` (ranges are unique on the machine), if any.
    static func initPID(uidBase base: UInt32) -> Int32? {
        HostCensus.processes().filter(\.isSandboxInit).first { KernelProc.hostUID(of: $0.pid) == base }?.pid
    }

    /// The runtime's init pid, found through its uid range.
    static func initPID(of runtime: NodeRuntime) async throws -> Int32 {
        let base = try await uidBase(of: runtime)
        guard let pid = initPID(uidBase: base) else { throw TestFailure("no sandbox init runs as host uid \(base)") }
        return pid
    }

    /// The sandbox inits that are children of supervisor `pid`.
    static func inits(ofSupervisor pid: Int32) -> [Int32] {
        HostCensus.children(of: pid).filter { $0.isSandboxInit && $0.state != "Z" }.map(\.pid)
    }
}

/// inotify instances of this (root) test process.
enum KernelInotify {
    /// How many inotify instances this process can create right now (up to
    /// `cap`), and the errno that stopped it (0 when `cap` was reached). Every
    /// instance is closed before it returns, so root's count is as it was.
    static func available(cap: Int = 1024) -> (count: Int, error: Int32) {
        var descriptors: [Int32] = []
        defer { descriptors.forEach { close($0) } }
        while descriptors.count < cap {
            let fd = inotify_init1(Int32(IN_CLOEXEC))
            guard fd >= 0 else { return (descriptors.count, errno) }
            descriptors.append(fd)
        }
        return (descriptors.count, 0)
    }
}

/// The uid slot leases under /run/secure-exec/uid-slots.
enum KernelSlots {
    static let directory = "/run/secure-exec/uid-slots"
    static let firstBase: UInt32 = 0x7000_0000

    /// The slot file leasing the range that starts at `base`.
    static func path(forBase base: UInt32) -> String { directory + "/\((base - firstBase) >> 16)" }

    /// Whether someone holds `flock` on the file: tries a non-blocking
    /// exclusive lock through a descriptor of its own and drops it at once.
    /// nil when the file cannot be opened.
    static func isLocked(_ path: String) -> Bool? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return false
        }
        return errno == EWOULDBLOCK ? true : nil
    }
}

/// The records of sandbox cgroups under /run/secure-exec/cgroups.
enum KernelLeftovers {
    static let directory = "/run/secure-exec/cgroups"

    /// The records written by supervisor `pid`: file name -> the cgroup paths it lists.
    static func records(ofSupervisor pid: Int32) -> [String: [String]] {
        var found: [String: [String]] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            guard let text = HostCensus.readText(directory + "/" + name) else { continue }
            var lines = text.split(separator: "\n").map(String.init)
            // The first line is "supervisor <pid>".
            guard !lines.isEmpty, lines.removeFirst().split(separator: " ").last == Substring("\(pid)") else { continue }
            found[name] = lines
        }
        return found
    }

    /// Removes what killed supervisors `pids` left (their empty cgroups and
    /// their records), so a test that kills hosts leaves nothing behind.
    static func clean(supervisors pids: Set<Int32>) {
        guard !pids.isEmpty else { return }
        var paths: [String] = []
        for pid in pids {
            for (name, listed) in records(ofSupervisor: pid) {
                paths += listed
                unlink(directory + "/" + name)
            }
        }
        for path in paths where path.hasPrefix("/sys/fs/cgroup/") && path.contains("/secure-exec-") {
            for _ in 0..<400 where rmdir(path) != 0 && errno != ENOENT { usleep(5000) }
        }
        HostCensus.removeCgroups(ofSupervisors: pids)
    }
}
