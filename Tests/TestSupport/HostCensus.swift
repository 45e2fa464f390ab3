import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One process on the host, as /proc shows it, identified by pid and start
/// time (so a reused pid is never mistaken for the process that had it before).
public struct HostProcessEntry: Sendable, Hashable, CustomStringConvertible {
    public let pid: Int32
    public let parent: Int32
    /// The one-letter state from /proc/<pid>/stat ("Z" for a zombie).
    public let state: String
    /// Clock ticks after boot at which it started (field 22 of /proc/<pid>/stat).
    public let startTime: UInt64
    public let commandLine: [String]

    public var description: String { "\(pid) (parent \(parent), \(state)) \(commandLine.joined(separator: " "))" }

    /// The sandbox's PID 1 (its argv[0] is set by the supervisor).
    public var isSandboxInit: Bool { commandLine.first == "secure-exec-init" }
    /// A guest `node` started from code (its entry file is `.secure-exec-entry-N.js`).
    public var isGuestNode: Bool {
        (commandLine.first.map { ($0 as NSString).lastPathComponent == "node" } ?? false)
            && commandLine.contains { $0.contains(".secure-exec-entry") }
    }
    /// Neither gone nor a zombie waiting for its parent: it still runs something.
    public var isRunning: Bool { state != "Z" && state != "X" }
}

/// What this test process holds on the host: descriptors, threads, mounts,
/// memory and processes, read from /proc.
public enum HostCensus {
    /// Every open descriptor of this process and what it points to (the
    /// directory handle used to list them is left out).
    public static func openDescriptors() -> [Int32: String] {
        guard let directory = opendir("/proc/self/fd") else { return [:] }
        defer { closedir(directory) }
        let own = dirfd(directory)
        var descriptors: [Int32: String] = [:]
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let fd = Int32(name), fd != own else { continue }
            descriptors[fd] = readLink("/proc/self/fd/\(fd)") ?? "?"
        }
        return descriptors
    }

    /// `target` (a descriptor's link text) with the socket's kind added when
    /// it is a unix or TCP socket of this network namespace, e.g.
    /// "socket:[123] (unix seqpacket)".
    public static func explain(_ target: String) -> String {
        guard target.hasPrefix("socket:["), let inode = Int(target.dropFirst(8).dropLast()) else { return target }
        let unixTypes = ["0001": "stream", "0002": "datagram", "0005": "seqpacket"]
        for line in (readText("/proc/self/net/unix") ?? "").split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            if fields.count >= 7, Int(fields[6]) == inode {
                return "\(target) (unix \(unixTypes[String(fields[4])] ?? String(fields[4]))\(fields.count > 7 ? " " + fields[7] : ""))"
            }
        }
        for table in ["tcp", "tcp6"] {
            for line in (readText("/proc/self/net/\(table)") ?? "").split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                if fields.count >= 10, Int(fields[9]) == inode { return "\(target) (\(table) \(fields[1]) -> \(fields[2]))" }
            }
        }
        return target
    }

    /// The number of threads in this process.
    public static func threadCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 0
    }

    /// The names of this process's threads (from /proc/self/task/*/comm), sorted.
    public static func threadNames() -> [String] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.compactMap { readText("/proc/self/task/\($0)/comm")?.trimmingCharacters(in: .newlines) }.sorted()
    }

    /// The number of lines in this process's mount table.
    public static func mountTableLineCount() -> Int {
        readText("/proc/self/mountinfo")?.split(separator: "\n").count ?? 0
    }

    /// Every process on the host (processes that vanish while being read are skipped).
    public static func processes() -> [HostProcessEntry] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return names.compactMap(Int32.init).compactMap(process)
    }

    /// One process, or nil when there is none with that pid.
    public static func process(_ pid: Int32) -> HostProcessEntry? {
        guard let stat = readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        // "pid (comm) S ppid ... starttime": comm may hold spaces and parentheses, so parse after the last ")".
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let parent = Int32(fields[1]), let startTime = UInt64(fields[19]) else { return nil }
        let commandLine = (readText("/proc/\(pid)/cmdline") ?? "")
            .split(separator: "\0", omittingEmptySubsequences: false).map(String.init)
        return HostProcessEntry(
            pid: pid, parent: parent, state: String(fields[0]), startTime: startTime,
            commandLine: commandLine.last == "" ? Array(commandLine.dropLast()) : commandLine)
    }

    /// True while the process `recorded` (the same pid and start time) still runs and is not a zombie.
    public static func isRunning(_ recorded: HostProcessEntry) -> Bool {
        guard let now = process(recorded.pid) else { return false }
        return now.startTime == recorded.startTime && now.isRunning
    }

    /// The processes whose parent is `pid` (this process by default), zombies included.
    public static func children(of pid: Int32 = getpid()) -> [HostProcessEntry] {
        processes().filter { $0.parent == pid }
    }

    /// Every sandbox init and guest `node` on the host, from any supervisor.
    public static func sandboxProcesses() -> [HostProcessEntry] {
        processes().filter { $0.isSandboxInit || $0.isGuestNode }
    }

    /// The environment of process `pid` (root may read any), or nil if it is gone.
    public static func environment(of pid: Int32) -> [String: String]? {
        guard let text = readText("/proc/\(pid)/environ") else { return nil }
        var environment: [String: String] = [:]
        for entry in text.split(separator: "\0") {
            guard let equals = entry.firstIndex(of: "=") else { continue }
            environment[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
        }
        return environment
    }

    /// This process's resident set size in bytes (VmRSS; 0 if it cannot be
    /// read, which fails the comparisons that use it loudly).
    public static func residentBytes() -> Int {
        for line in (readText("/proc/self/status") ?? "").split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let kilobytes = line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
            return kilobytes * 1024
        }
        return 0
    }

    /// The whole file read with plain read(2) (procfs files report size 0, so no
    /// size-based read); nil when it cannot be opened or read.
    public static func readBytes(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return count == 0 ? bytes : nil }
            bytes += chunk[..<count]
        }
    }

    /// `readBytes` as text.
    public static func readText(_ path: String) -> String? {
        readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    public static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink(path, &buffer, buffer.count - 1)
        guard length >= 0 else { return nil }
        return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The cgroup directories (`secure-exec-<pid>-*`, v1 or v2, at any depth
    /// below /sys/fs/cgroup) that supervisors `pids` made.
    public static func sandboxCgroups(ofSupervisors pids: Set<Int32>) -> [String] {
        var found: [String] = []
        var level = ["/sys/fs/cgroup"]
        for _ in 0..<5 {
            var next: [String] = []
            for directory in level {
                for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
                    let path = directory + "/" + name
                    var isDirectory: ObjCBool = false
                    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue
                    else { continue }
                    if pids.contains(where: { name.hasPrefix("secure-exec-\($0)-") }) {
                        found.append(path)
                    } else if !name.hasPrefix("secure-exec-") {
                        next.append(path)
                    }
                }
            }
            level = next
        }
        return found
    }

    /// Removes the empty cgroups (`secure-exec-<pid>-*`) that supervisors
    /// killed by a test could not remove themselves, so such tests leave
    /// nothing behind. rmdir only succeeds once no process is left in them;
    /// it retries for up to 2 s while the kernel finishes tearing down.
    public static func removeCgroups(ofSupervisors pids: Set<Int32>) {
        guard !pids.isEmpty else { return }
        let found = sandboxCgroups(ofSupervisors: pids)
        for path in found {
            for _ in 0..<400 where rmdir(path) != 0 && errno != ENOENT { usleep(5000) }
        }
        // And their records of those cgroups (see Leftovers in the Supervisor).
        let records = "/run/secure-exec/cgroups"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: records)) ?? []
        where pids.contains(where: { name.hasPrefix("secure-exec-\($0)-") }) {
            unlink(records + "/" + name)
        }
    }
}
