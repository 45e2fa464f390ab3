import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What a supervisor that died without disposing leaves behind, and its reclaiming.
///
/// Each sandbox cgroup is recorded in `/run/secure-exec/cgroups/<name>` with
/// its creator's identity (pid and start time, so a reused pid is not taken
/// for the creator). When the creator is gone, the next supervisor anywhere on
/// the machine (at its first `create`) or `secure-exec gc` removes the empty
/// cgroups and the record. rmdir only succeeds on a cgroup with no process,
/// so nothing live is touched. uid slots need no reclaiming: the kernel drops
/// a dead holder's lock.
package enum Leftovers {
    static let directoryName = "cgroups"
    private static let reclaimedOnce = Atomic<Bool>(false)

    /// Notes a sandbox's cgroup directories before anything runs in them.
    static func record(name: String, paths: [String]) {
        guard let directory = try? StateDirectory.open(directoryName) else { return }
        defer { SystemCall.close(directory) }
        let fd = openat(directory, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { return }
        defer { SystemCall.close(fd) }
        let text = "\(getpid()) \(startTime(of: getpid()) ?? 0)\n" + paths.map { $0 + "\n" }.joined()
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }

    /// Forgets a record once its cgroups were removed.
    static func forget(name: String) {
        guard let directory = try? StateDirectory.open(directoryName) else { return }
        defer { SystemCall.close(directory) }
        unlinkat(directory, name, 0)
    }

    /// Reclaims once per process, before its first sandbox.
    static func reclaimOnce() {
        if reclaimedOnce.exchange(true, ordering: .relaxed) { return }
        _ = reclaim()
    }

    /// Removes the empty cgroups of every supervisor that is gone; says what it removed.
    package static func reclaim() -> [String] {
        let base = StateDirectory.path(directoryName)
        guard let directory = try? StateDirectory.open(directoryName) else { return [] }
        SystemCall.close(directory)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: base) else { return [] }
        var removed: [String] = []
        for name in names.sorted() where name.hasPrefix("secure-exec-") {
            guard let text = try? String(contentsOfFile: base + "/" + name, encoding: .utf8) else { continue }
            var lines = text.split(separator: "\n").map(String.init)
            guard !lines.isEmpty else { continue }
            let owner = lines.removeFirst().split(separator: " ")
            guard owner.count == 2, let pid = Int32(owner[0]), let started = UInt64(owner[1]) else { continue }
            if isAlive(pid: pid, started: started) { continue }
            var empty = true
            for path in lines where isSandboxCgroup(path) {
                if rmdir(path) == 0 {
                    removed.append("removed cgroup \(path) (supervisor \(pid) is gone)")
                } else if errno != ENOENT {
                    empty = false  // a process is still inside: leave it for later
                }
            }
            if empty { unlink(base + "/" + name) }
        }
        return removed
    }

    /// Only ever a cgroup SecureExec named, on a cgroup filesystem.
    private static func isSandboxCgroup(_ path: String) -> Bool {
        path.hasPrefix("/sys/fs/cgroup/") && (path as NSString).lastPathComponent.hasPrefix("secure-exec-")
            && !path.contains("/../") && !path.hasSuffix("/..")
    }

    private static func isAlive(pid: Int32, started: UInt64) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        return startTime(of: pid) == started
    }

    /// Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot.
    static func startTime(of pid: Int32) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }
}
