import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What a supervisor that died without disposing leaves behind, and its reclaiming.
///
/// Each sandbox cgroup is recorded in `/run/secure-exec/cgroups/<name>`, and
/// the supervisor holds an `flock` on that record for as long as the cgroup
/// is its own. The kernel drops the lock when the supervisor dies, in
/// whatever pid namespace or container it ran, so a record whose lock can be
/// taken belongs to nobody: the next supervisor anywhere on the machine (at
/// its first `create`) or `secure-exec gc` removes its empty cgroups and the
/// record. rmdir only succeeds on a cgroup with no process, so nothing live is
/// touched. uid slots need no reclaiming: the kernel drops a dead holder's lock.
package enum Leftovers {
    static let directoryName = "cgroups"
    private static let reclaimedOnce = Atomic<Bool>(false)

    /// Notes a sandbox's cgroup directories before anything runs in them and
    /// returns the record's locked descriptor, which the caller holds until
    /// `forget`. -1 when the record could not be made (nothing to reclaim then).
    static func record(name: String, paths: [String]) -> Int32 {
        guard let directory = try? StateDirectory.open(directoryName) else { return -1 }
        defer { SystemCall.close(directory) }
        // Made under a temporary name, locked, written, then renamed into
        // place: a reclaimer never sees a record that is not locked yet.
        let temporary = ".\(name).new"
        let fd = openat(directory, temporary, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { return -1 }
        let text = "supervisor \(getpid())\n" + paths.map { $0 + "\n" }.joined()
        let bytes = Array(text.utf8)
        guard flock(fd, LOCK_EX | LOCK_NB) == 0,
            bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count,
            renameat(directory, temporary, directory, name) == 0
        else {
            unlinkat(directory, temporary, 0)
            SystemCall.close(fd)
            return -1
        }
        return fd
    }

    /// Forgets a record once its cgroups were removed, and lets go of its lock.
    static func forget(name: String, lock: Int32) {
        if let directory = try? StateDirectory.open(directoryName) {
            unlinkat(directory, name, 0)
            SystemCall.close(directory)
        }
        SystemCall.close(lock)
    }

    /// Reclaims once per process, before its first sandbox.
    static func reclaimOnce() {
        if reclaimedOnce.exchange(true, ordering: .relaxed) { return }
        _ = reclaim()
    }

    /// Removes the empty cgroups of every supervisor that is gone; says what it removed.
    package static func reclaim() -> [String] {
        guard let directory = try? StateDirectory.open(directoryName) else { return [] }
        defer { SystemCall.close(directory) }
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: StateDirectory.path(directoryName))
        else { return [] }
        var removed: [String] = []
        for name in names.sorted() where name.hasPrefix("secure-exec-") {
            let fd = openat(directory, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
            guard fd >= 0 else { continue }
            defer { SystemCall.close(fd) }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { continue }  // its supervisor is alive
            var bytes = [UInt8](repeating: 0, count: 64 << 10)
            let count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { continue }
            var lines = String(decoding: bytes[..<count], as: UTF8.self).split(separator: "\n").map(String.init)
            let owner = lines.isEmpty ? "" : lines.removeFirst()
            var empty = true
            for path in lines where isSandboxCgroup(path) {
                if rmdir(path) == 0 {
                    removed.append("removed cgroup \(path) (\(owner) is gone)")
                } else if errno != ENOENT {
                    empty = false  // a process is still inside: leave it for later
                }
            }
            if empty { unlinkat(directory, name, 0) }
        }
        return removed
    }

    /// Only ever a cgroup SecureExec named, on a cgroup filesystem.
    private static func isSandboxCgroup(_ path: String) -> Bool {
        path.hasPrefix("/sys/fs/cgroup/") && (path as NSString).lastPathComponent.hasPrefix("secure-exec-")
            && !path.split(separator: "/").contains("..")
    }
}
