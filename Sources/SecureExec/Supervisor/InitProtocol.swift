import CNamespaces
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The supervisor's side of the init protocol, as pure functions: what goes
/// into each request and what each event means. Nothing here touches a
/// descriptor, so all of it is unit-tested without root.
///
/// Every key, request and event kind comes from `se_protocol.h`, which
/// init's C parser uses too (ARCHITECTURE.md, "The init protocol").
enum InitProtocol {
    /// One `key=value` record.
    static func record(_ key: String, _ value: some CustomStringConvertible) -> String {
        "\(key)=\(value)"
    }

    /// Records as one payload: each NUL-terminated, in order. A record with
    /// a NUL of its own would split in two on init's side, so it is refused.
    static func payload(_ records: [String]) throws(SecureExecError) -> [UInt8] {
        var payload: [UInt8] = []
        for record in records {
            guard !record.utf8.contains(0) else {
                throw SecureExecError(.invalidArgument, "a request record contains NUL: \(record.debugDescription)", step: "send request")
            }
            payload += record.utf8
            payload.append(0)
        }
        guard payload.count + MemoryLayout<se_request>.size <= Int(SE_MAX_REQUEST) else {
            throw SecureExecError(
                .invalidArgument,
                "the request is \(payload.count) bytes; arguments and environment together must stay under \(SE_MAX_REQUEST - 1024) bytes",
                step: "send request")
        }
        return payload
    }

    // MARK: - SE_REQ_CONFIG

    /// The first request: how init builds the sandbox. Mount records come
    /// last, one per detached mount descriptor, in the descriptors' order.
    /// `localtime` is where the guest's /etc/localtime links to (the host
    /// zone's file: one of the mounts, or the root's own), if anywhere.
    static func configRecords(
        _ configuration: SandboxConfiguration, mounts: [String], tcpMemory: TCPMemory?,
        localtime: String? = nil
    ) -> [String] {
        let limits = configuration.limits
        var records = [
            record(SE_KEY_WORKSPACE_BYTES, limits.workspaceBytes),
            record(SE_KEY_TMP_BYTES, limits.tmpBytes),
            record(SE_KEY_NETWORK, configuration.permissions.network.isAllowed ? 1 : 0),
            record(SE_KEY_CHILD_PROCESS, configuration.permissions.childProcess == .allow ? 1 : 0),
            record(SE_KEY_GUEST_UID, Sandbox.guestUID),
            record(SE_KEY_GUEST_GID, Sandbox.guestUID),
            record(SE_KEY_HOSTNAME, configuration.hostname),
        ]
        records += configuration.writableAreas.map { record(SE_KEY_WRITABLE, $0) }
        records += sysctls(limits, tcpMemory: tcpMemory).map { record(SE_KEY_SYSCTL, $0) }
        // A file helper still running when the supervisor gave up ends itself.
        records.append(record(SE_KEY_FILE_TIMEOUT, wholeSeconds(limits.fileOperationTimeout, within: 1...(86400 * 366))))
        if let localtime { records.append(record(SE_KEY_LOCALTIME, localtime)) }
        // With egress, the guest's resolver asks the supervisor's DNS server in the sandbox.
        if configuration.permissions.network.egress != nil {
            records.append(record(SE_KEY_NAMESERVER, EgressGateway.nameserver))
        }
        return records + mounts
    }

    /// The record announcing the workspace's descriptor.
    static func workspaceRecord(_ mode: Workspace.Mode) -> String {
        record(SE_KEY_WORKSPACE, mode == .overlay ? "overlay" : "bind")
    }

    /// The record announcing one mount's descriptor.
    static func mountRecord(_ guestPath: String) -> String {
        record(SE_KEY_MOUNT, guestPath)
    }

    /// The record announcing the root's base (`.directory`): its descriptor comes first of the mounts.
    static let rootBaseRecord = record(SE_KEY_ROOT, "directory")

    /// A symlink init makes in the root.
    static func symlinkRecord(_ link: GuestRoot.Symlink) -> String {
        record(SE_KEY_SYMLINK, "\(link.path) \(link.target)")
    }

    /// The host's TCP buffer sizes (`/proc/sys/net/ipv4/tcp_{r,w}mem`: min,
    /// default, max), which a sandbox's own may lower but not exceed.
    struct TCPMemory: Sendable, Equatable {
        var read: [UInt64]
        var write: [UInt64]

        static func host() -> TCPMemory? {
            func values(_ name: String) -> [UInt64]? {
                guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/\(name)", encoding: .utf8) else { return nil }
                let values = text.split(whereSeparator: \.isWhitespace).compactMap { UInt64($0) }
                return values.count == 3 ? values : nil
            }
            guard let read = values("tcp_rmem"), let write = values("tcp_wmem") else { return nil }
            return TCPMemory(read: read, write: write)
        }
    }

    /// Per-namespace kernel settings init makes in the sandbox before any guest runs.
    static func sysctls(_ limits: Limits, tcpMemory: TCPMemory?) -> [String] {
        var settings = [
            "user/max_inotify_instances \(limits.inotifyInstances)",
            "user/max_inotify_watches \(limits.inotifyWatches)",
            // Any port may be bound in the sandbox's own network namespace
            // (port 80 as on a developer's machine); it reaches nothing else.
            "net/ipv4/ip_unprivileged_port_start 0",
        ]
        // Guests never make namespaces (seccomp refuses); make the count say so too.
        for kind in ["user", "mnt", "net", "pid", "ipc", "uts", "cgroup", "time"] {
            settings.append("user/max_\(kind)_namespaces 0")
        }
        // Socket buffers of one connection stay a small share of the memory limit.
        if let memory = limits.memoryBytes, let tcpMemory {
            let ceiling = max(UInt64(256 << 10), UInt64(memory) / 64)
            for (name, values) in [("tcp_rmem", tcpMemory.read), ("tcp_wmem", tcpMemory.write)] {
                let top = min(values[2], ceiling)
                settings.append("net/ipv4/\(name) \(min(values[0], top)) \(min(values[1], top)) \(top)")
            }
        }
        return settings
    }

    // MARK: - SE_REQ_SPAWN

    /// A spawn request's records. `entry` is where init writes the code
    /// descriptor, when the request carries one; `root` gives the default
    /// environment (`RootImage.guestEnvironment`).
    static func spawnRecords(_ request: SpawnRequest, entry: String?, limits: Limits, root: RootImage = .minimal) -> [String] {
        let executable = request.executable ?? Sandbox.nodePath
        var records = [
            record(SE_KEY_EXE, executable), record(SE_KEY_CWD, request.workingDirectory),
            record(SE_KEY_ARG, request.executable ?? "node"),
        ]
        let runsEntry = entry != nil || request.entryFile != nil
        // Without an entry, the arguments are node's own options. The heap
        // limit is node's alone: another program's arguments stay as they are.
        let heap =
            request.executable != nil
            ? []
            : heapLimitOptions(
                limits, nodeOptions: request.nodeOptions + (runsEntry ? [] : request.arguments),
                environment: request.environment)
        // Node picks ESM or CommonJS from the code itself, as it does for a typeless .js file.
        let options = ["--experimental-detect-module"] + heap + request.nodeOptions
        if request.executable != nil {
            // Another program: its arguments as they are.
        } else if let entry {
            records.append(record(SE_KEY_ENTRY, entry))
            records += (options + [entry]).map { record(SE_KEY_ARG, $0) }
        } else if let file = request.entryFile {
            records += (options + [file]).map { record(SE_KEY_ARG, $0) }
        } else {
            records += heap.map { record(SE_KEY_ARG, $0) }
        }
        records += request.arguments.map { record(SE_KEY_ARG, $0) }
        let openFiles = limits.openFilesPerProcess
        records.append(record(SE_KEY_RLIMIT, "\(RLIMIT_NOFILE.rawValue):\(openFiles):\(openFiles)"))
        records.append(record(SE_KEY_RLIMIT, "\(RLIMIT_CORE.rawValue):0:0"))
        if let cpu = limits.cpuTimePerProcess {
            // RLIMIT_CPU counts whole seconds: a fraction rounds up, never down.
            // Soft: SIGXCPU (reported as the CPU limit); hard a second later: SIGKILL.
            let seconds = wholeSeconds(cpu, within: 1...UInt64(Int64.max - 1))
            records.append(record(SE_KEY_RLIMIT, "\(RLIMIT_CPU.rawValue):\(seconds):\(seconds + 1)"))
        }
        var environment = root.guestEnvironment
        environment.merge(request.environment) { _, caller in caller }
        records += environment.sorted { $0.key < $1.key }.map { record(SE_KEY_ENV, "\($0.key)=\($0.value)") }
        return records
    }

    /// V8's old-space limit at three quarters of the memory limit, so a heap
    /// that outgrows it ends in node's "JavaScript heap out of memory" error
    /// rather than a kill by the kernel, while a program may still use most
    /// of the limit (node's own default, sized from the constrained memory it
    /// reads in the cgroup view, is half of it but at least 256 MiB: past a
    /// small limit). None without a memory limit, or when the caller set one
    /// in node's options or `NODE_OPTIONS`.
    static func heapLimitOptions(_ limits: Limits, nodeOptions: [String], environment: [String: String]) -> [String] {
        guard let memory = limits.memoryBytes else { return [] }
        let names = ["--max-old-space-size", "--max_old_space_size"]
        let given = nodeOptions + (environment["NODE_OPTIONS"].map { [$0] } ?? [])
        if given.contains(where: { option in names.contains { option.contains($0) } }) { return [] }
        return ["--max-old-space-size=\(max(1, (memory / 4 * 3) >> 20))"]
    }

    /// Where init writes the code of spawn request `id`: in the workspace,
    /// so the code's relative imports resolve from there.
    static func entryPath(request id: UInt32) -> String {
        "\(Sandbox.workspace)/.secure-exec-entry-\(id).js"
    }

    /// `duration` in whole seconds, rounded up and kept within `range`.
    static func wholeSeconds(_ duration: Duration, within range: ClosedRange<UInt64>) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return range.lowerBound }
        let rounded = UInt64(seconds).addingReportingOverflow(attoseconds > 0 ? 1 : 0)
        return rounded.overflow ? range.upperBound : min(max(rounded.partialValue, range.lowerBound), range.upperBound)
    }

    // MARK: - SE_REQ_FILE

    /// A file request's records: the operation (read, write, list, remove,
    /// mkdir) and the guest path it acts on.
    static func fileRecords(_ operation: String, _ path: String) -> [String] {
        [record(SE_KEY_OP, operation), record(SE_KEY_PATH, path)]
    }

    // MARK: - Events

    /// What a spawn that failed at `step` says: the path it names when there
    /// is one (init reports "open <executable>" and "missing interpreter
    /// <path>", the program a `#!` line or an ELF loader entry asks for).
    static func spawnFailure(step: String) -> String {
        let interpreter = "missing interpreter "
        if step.hasPrefix(interpreter) {
            return "the guest could not be started: the interpreter its executable names, \(step.dropFirst(interpreter.count)), is missing"
        }
        if step.hasPrefix("open /") {
            return "the guest could not be started: could not open \(step.dropFirst(5))"
        }
        return "the guest could not be started"
    }

    /// One event from init, decoded.
    enum Event: Sendable, Equatable {
        case ready
        case setupFailed(step: String, errno: Int32)
        case spawned(request: UInt32, pid: Int32)
        case spawnFailed(request: UInt32, step: String, errno: Int32)
        case exited(pid: Int32, status: Int32)
        case signalFailed(request: UInt32, pid: Int32, errno: Int32)
        case fileDone(request: UInt32, errno: Int32)
        /// Init could not act on a request at all (malformed, unknown);
        /// `request` is 0 when not even its header could be read.
        case requestFailed(request: UInt32, step: String, errno: Int32)
        /// An event of a kind this supervisor does not know.
        case unknown(type: UInt32)
    }

    static func decode(_ event: se_event) -> Event {
        let step = withUnsafeBytes(of: event.step) { bytes in
            String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        switch event.type {
        case SE_EV_READY.rawValue: return .ready
        case SE_EV_SETUP_FAILED.rawValue: return .setupFailed(step: step, errno: event.err)
        case SE_EV_SPAWNED.rawValue: return .spawned(request: event.id, pid: event.pid)
        case SE_EV_SPAWN_FAILED.rawValue: return .spawnFailed(request: event.id, step: step, errno: event.err)
        case SE_EV_EXITED.rawValue: return .exited(pid: event.pid, status: event.status)
        case SE_EV_SIGNAL_FAILED.rawValue: return .signalFailed(request: event.id, pid: event.pid, errno: event.err)
        case SE_EV_FILE_DONE.rawValue: return .fileDone(request: event.id, errno: event.err)
        case SE_EV_REQUEST_FAILED.rawValue: return .requestFailed(request: event.id, step: step, errno: event.err)
        default: return .unknown(type: event.type)
        }
    }

    /// The name of the step at which the sandbox's first process failed
    /// between clone and exec (`SE_CHILD_STEP_*`, named in C).
    static func childStepName(_ step: Int32) -> String {
        String(cString: se_child_step_name(step))
    }
}
