import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The cgroups that hold one sandbox, for its memory and pids limits.
///
/// Made only below the cgroup this process is in (read from
/// `/proc/self/cgroup`), one per controller, and removed on dispose. Each
/// controller is used where the host has it: a cgroup v1 hierarchy of its own
/// (as on hybrid hosts), or the unified cgroup v2 hierarchy when the parent
/// delegates it (`cgroup.subtree_control`). On v2 the sandbox's init is
/// cloned straight into its cgroup (CLONE_INTO_CGROUP); on v1 it is moved
/// in before it execs, so every guest starts inside.
///
/// Concurrency: created and removed with blocking file-system calls, so
/// only from a Dispatch thread (`Blocking`); `oomBaseline` is its one
/// mutable value, read from init's exit events.
package final class SandboxCgroup: Sendable {
    enum Controller: String, Sendable { case memory, pids }

    private struct Directory: Sendable {
        let path: String
        let version: Int  // 1 or 2
    }

    private let directories: [Controller: Directory]
    private let unifiedPath: String?
    private let oomBaseline = Mutex(0)

    private let name: String
    /// Our locked record of these cgroups (see `Leftovers`); -1 if none or given up.
    private let record: Mutex<Int32>

    private init(name: String, record: Int32, directories: [Controller: Directory]) {
        self.name = name
        self.record = Mutex(record)
        self.directories = directories
        self.unifiedPath = directories.values.first { $0.version == 2 }?.path
    }

    /// Creates the cgroups and applies the limits. Throws `.unsupportedHost`
    /// when a controller is on neither hierarchy, `.sandboxSetupFailed` when
    /// a write fails (nothing is left behind either way).
    package static func create(name: String, memoryBytes: UInt64, maxProcesses: Int) throws(SecureExecError)
        -> SandboxCgroup
    {
        Leftovers.reclaimOnce()
        let hierarchy = CgroupHierarchy.current()
        var made: [Controller: Directory] = [:]
        func rollback() {
            for directory in made.values { rmdir(directory.path) }
        }
        for controller in [Controller.memory, .pids] {
            guard let parent = hierarchy.parent(for: controller.rawValue) else {
                rollback()
                throw SecureExecError(
                    .unsupportedHost,
                    "the \(controller.rawValue) cgroup controller is not available to this process (neither a cgroup v1 hierarchy nor delegated on cgroup v2)",
                    step: "cgroup \(controller.rawValue)")
            }
            // v2: one directory holds every controller.
            if parent.version == 2, let existing = made.values.first(where: { $0.version == 2 }) {
                made[controller] = existing
                continue
            }
            let path = parent.path + "/" + name
            if mkdir(path, 0o755) != 0 && errno != EEXIST {
                let error = SystemCall.failure(.sandboxSetupFailed, "could not create \(path)", step: "mkdir cgroup")
                rollback()
                throw error
            }
            made[controller] = Directory(path: path, version: parent.version)
        }
        let record = Leftovers.record(name: name, paths: Array(Set(made.values.map(\.path))).sorted())
        let cgroup = SandboxCgroup(name: name, record: record, directories: made)
        do throws(SecureExecError) {
            try cgroup.applyLimits(memoryBytes: memoryBytes, maxProcesses: maxProcesses)
        } catch {
            cgroup.remove()
            throw error
        }
        cgroup.oomBaseline.withLock { $0 = cgroup.oomKillCount() }
        return cgroup
    }

    private func applyLimits(memoryBytes: UInt64, maxProcesses: Int) throws(SecureExecError) {
        if let memory = directories[.memory] {
            if memory.version == 2 {
                try write("\(memoryBytes)", to: memory.path + "/memory.max")
                try? write("0", to: memory.path + "/memory.swap.max")  // absent when swap accounting is off
            } else {
                try write("\(memoryBytes)", to: memory.path + "/memory.limit_in_bytes")
                // Swap off: memory+swap may not exceed memory alone (absent without swap accounting).
                try? write("\(memoryBytes)", to: memory.path + "/memory.memsw.limit_in_bytes")
                try? write("0", to: memory.path + "/memory.swappiness")
                // v1 does not count socket buffers unless TCP accounting is
                // switched on for the cgroup, by giving it a limit: then a
                // guest hoarding unread loopback data hits its own limit, not
                // the host-wide tcp_mem. v1 counts them apart from memory,
                // so they get a quarter of the limit on top of it. (v2 always
                // counts them inside memory.max.) Kernels built without v1
                // kmem accounting lack the file; there socket buffers stay
                // uncounted (the README says so).
                let tcp = memory.path + "/memory.kmem.tcp.limit_in_bytes"
                if access(tcp, F_OK) == 0 { try write("\(memoryBytes / 4)", to: tcp) }
            }
        }
        if let pids = directories[.pids] {
            try write("\(maxProcesses)", to: pids.path + "/pids.max")
        }
    }

    /// The guest's read-only views of the sandbox's own cgroups, where libuv
    /// (`process.constrainedMemory()`, V8's default heap size) and other
    /// runtimes read their limits: `/sys/fs/cgroup/<controller>` for a v1
    /// hierarchy, `/sys/fs/cgroup` for v2 (`/sys/fs/cgroup/unified` beside v1
    /// ones, as hybrid hosts lay it out). Init roots its cgroup namespace at
    /// these cgroups, so the guest's /proc/self/cgroup says "/" for them.
    /// Nothing above or beside them is shown, and nothing in them is writable.
    package var guestViews: [HostMount] {
        let attributes: HostMount.Attributes = [.readOnly, .noSetuid, .noDevices, .noExec]
        var views: [HostMount] = []
        var shown: Set<String> = []
        for controller in [Controller.memory, .pids] {
            guard let directory = directories[controller], directory.version == 1, shown.insert(directory.path).inserted
            else { continue }
            views.append(HostMount(hostPath: directory.path, guestPath: "/sys/fs/cgroup/\(controller.rawValue)", attributes: attributes))
        }
        if let unifiedPath {
            let guestPath = views.isEmpty ? "/sys/fs/cgroup" : "/sys/fs/cgroup/unified"
            views.append(HostMount(hostPath: unifiedPath, guestPath: guestPath, attributes: attributes))
        }
        return views
    }

    /// The v2 cgroup directory to clone init into, if the sandbox uses v2.
    package var cloneTarget: String? { unifiedPath }

    /// Moves `pid` into every v1 cgroup (v2 placement happens at clone time).
    package func adopt(pid: Int32) throws(SecureExecError) {
        for directory in Set(directories.values.map(\.path)) where directories.values.first(where: { $0.path == directory })?.version == 1 {
            try write("\(pid)", to: directory + "/cgroup.procs")
        }
    }

    /// True if the kernel's OOM killer has killed something in the sandbox
    /// since the last call (or creation).
    package func consumeOOMKill() -> Bool {
        let now = oomKillCount()
        return oomBaseline.withLock { baseline in
            defer { baseline = now }
            return now > baseline
        }
    }

    private func oomKillCount() -> Int {
        guard let memory = directories[.memory] else { return 0 }
        let file = memory.version == 2 ? "/memory.events" : "/memory.oom_control"
        guard let text = try? String(contentsOfFile: memory.path + file, encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("oom_kill ") {
            return Int(line.split(separator: " ").last ?? "0") ?? 0
        }
        return 0
    }

    /// Removes the cgroups. Call after every process in them has exited;
    /// retries briefly while the kernel finishes tearing the last ones down.
    package func remove() {
        var gone = true
        for path in Set(directories.values.map(\.path)) {
            var removed = false
            for _ in 0..<200 {
                if rmdir(path) == 0 || errno == ENOENT {
                    removed = true
                    break
                }
                usleep(5000)
            }
            gone = gone && removed
        }
        // Still there: the record, unlocked once this process is gone, lets a
        // later supervisor or `gc` finish the job.
        let lock = record.withLock { fd in
            defer { fd = -1 }
            return fd
        }
        if gone {
            Leftovers.forget(name: name, lock: lock)
        } else {
            SystemCall.close(lock)
        }
    }

    private func write(_ value: String, to path: String) throws(SecureExecError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCall.failure(.sandboxSetupFailed, "could not open \(path)", step: "cgroup write") }
        defer { SystemCall.close(fd) }
        let bytes = Array(value.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else {
            throw SystemCall.failure(.sandboxSetupFailed, "could not write \(value) to \(path)", step: "cgroup write")
        }
    }
}

/// Where this process sits in the cgroup hierarchies, from /proc/self/cgroup
/// and /proc/self/mountinfo.
struct CgroupHierarchy {
    struct Parent {
        let path: String
        let version: Int
    }

    private var v1: [String: String] = [:]  // controller -> our cgroup directory
    private var v2: String?  // our cgroup directory on the unified hierarchy
    private var v2Controllers: Set<String> = []

    static func current() -> CgroupHierarchy {
        var hierarchy = CgroupHierarchy()
        let membership = (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? ""
        let mounts = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        var v1Mounts: [String: String] = [:]  // controller -> mount point
        var v2Mount: String?
        for line in mounts.split(separator: "\n") {
            // "... mountpoint options - fstype source superoptions"
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { continue }
            let before = halves[0].split(separator: " ")
            let after = halves[1].split(separator: " ")
            guard before.count > 4, after.count > 2 else { continue }
            let mountPoint = String(before[4])
            if after[0] == "cgroup2" {
                if v2Mount == nil { v2Mount = mountPoint }
            } else if after[0] == "cgroup" {
                for option in after[2].split(separator: ",") where ["memory", "pids"].contains(String(option)) {
                    v1Mounts[String(option)] = mountPoint
                }
            }
        }
        for line in membership.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            let path = String(parts[2])
            if parts[1].isEmpty, let v2Mount {
                hierarchy.v2 = v2Mount + (path == "/" ? "" : path)
            } else {
                for controller in parts[1].split(separator: ",") {
                    if let mount = v1Mounts[String(controller)] {
                        hierarchy.v1[String(controller)] = mount + (path == "/" ? "" : path)
                    }
                }
            }
        }
        if let v2 = hierarchy.v2,
            let delegated = try? String(contentsOfFile: v2 + "/cgroup.subtree_control", encoding: .utf8)
        {
            hierarchy.v2Controllers = Set(delegated.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
        }
        return hierarchy
    }

    func parent(for controller: String) -> Parent? {
        if let path = v1[controller] { return Parent(path: path, version: 1) }
        if let path = v2, v2Controllers.contains(controller) { return Parent(path: path, version: 2) }
        return nil
    }
}
