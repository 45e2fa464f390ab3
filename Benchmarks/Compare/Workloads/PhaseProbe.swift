import CPhases
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The kernel's share of a sandbox's creation, in ms per step (see cphases.h).
public struct KernelPhases: Sendable {
    /// clone3 into user, pid, mount, net, ipc, uts and cgroup namespaces (in the parent).
    public var clone: Double
    /// uid_map and gid_map written.
    public var idMaps: Double
    /// lo brought up.
    public var loopback: Double
    /// tmpfs root, /dev, writable areas, read-only binds of node and its libraries, devices, /proc and its masks.
    public var mounts: Double
    /// root remounted read-only, pivot_root, old root detached.
    public var pivot: Double
    /// from the child's last step to its exit reaped (namespaces released; the net namespace's cleanup is deferred by the kernel).
    public var teardown: Double
    /// cgroup v1 memory and pids directories made and limited (as SecureExec's defaults); nil without v1 controllers.
    public var cgroupSetup: Double?
    /// the child moved into both by writing cgroup.procs, before it runs.
    public var cgroupAttach: Double?
    /// both directories removed after the exit (rmdir retried every 5 ms while busy, as SecureExec does).
    public var cgroupRemoval: Double?
    /// clone3 to reap, cgroup steps included.
    public var total: Double

    /// The steps before the child exits: what create() pays the kernel for.
    public var setup: Double { clone + idMaps + (cgroupAttach ?? 0) + loopback + mounts + pivot + (cgroupSetup ?? 0) }
}

/// Runs cphases_run with the same guest root SecureExec builds for this host's node.
public final class PhaseProbe {
    private var strings: [UnsafeMutablePointer<CChar>] = []
    private var directories: [UnsafePointer<CChar>] = []
    private var bindSources: [UnsafePointer<CChar>] = []
    private var bindTargets: [UnsafePointer<CChar>] = []
    private var deviceSources: [UnsafePointer<CChar>] = []
    private var deviceTargets: [UnsafePointer<CChar>] = []

    /// The v1 hierarchies' directories holding this process for memory and pids, if the host has them.
    private let cgroupParents: [String]?
    private var cgroupSerial = 0

    public init(host: NodeHost) {
        cgroupParents = Self.v1Parents(["memory", "pids"])
        var binds = [(host.node, host.node)] + host.runtimeFiles.map { ($0.source, $0.target) }
        binds = binds.filter { FileManager.default.fileExists(atPath: $0.0) }
        let devices = ["null", "zero", "full", "random", "urandom", "tty"].map { "/dev/" + $0 }
            .filter { FileManager.default.fileExists(atPath: $0) }
        var wanted: Set<String> = ["/tmp/dev", "/tmp/proc", "/tmp/workspace", "/tmp/tmp", "/tmp/etc"]
        for (_, target) in binds {
            var parent = ("/tmp" + target as NSString).deletingLastPathComponent
            while parent != "/tmp" && parent != "/" {
                wanted.insert(parent)
                parent = (parent as NSString).deletingLastPathComponent
            }
        }
        let ordered = wanted.sorted { ($0.split(separator: "/").count, $0) < ($1.split(separator: "/").count, $1) }
        directories = ordered.map(keep)
        bindSources = binds.map { keep($0.0) }
        bindTargets = binds.map { keep("/tmp" + $0.1) }
        deviceSources = devices.map(keep)
        deviceTargets = devices.map { keep("/tmp" + $0) }
    }

    deinit { strings.forEach { free($0) } }

    /// Whether the probe also times cgroup steps (the host has v1 memory and pids hierarchies).
    public var timesCgroups: Bool { cgroupParents != nil }

    private static func v1Parents(_ controllers: [String]) -> [String]? {
        guard let membership = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8),
            let mounts = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        else { return nil }
        var parents: [String] = []
        for controller in controllers {
            var mountPoint: String?
            for line in mounts.split(separator: "\n") {
                let halves = line.components(separatedBy: " - ")
                guard halves.count == 2 else { continue }
                let before = halves[0].split(separator: " ")
                let after = halves[1].split(separator: " ")
                if before.count > 4, after.count > 2, after[0] == "cgroup",
                    after[2].split(separator: ",").contains(Substring(controller))
                {
                    mountPoint = String(before[4])
                }
            }
            let line = membership.split(separator: "\n").first {
                let parts = $0.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                return parts.count == 3 && parts[1].split(separator: ",").contains(Substring(controller))
            }
            guard let mountPoint, let line else { return nil }
            let path = String(line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)[2])
            parents.append(mountPoint + (path == "/" ? "" : path))
        }
        return parents
    }

    private static func write(_ text: String, to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return text.withCString { Glibc.write(fd, $0, strlen($0)) } == text.utf8.count
    }

    private func keep(_ text: String) -> UnsafePointer<CChar> {
        let copy = strdup(text)!
        strings.append(copy)
        return UnsafePointer(copy)
    }

    /// One run; `uidBase` is a host uid range of 65536 nobody else uses.
    /// With `cgroups`, the child also goes into fresh v1 memory and pids cgroups, as a SecureExec sandbox does.
    public func run(uidBase: UInt32 = 0x6000_0000, cgroups: Bool = true) throws -> KernelPhases {
        var cgroupDirectories: [String] = []
        var setupTime: Double?
        if cgroups, let parents = cgroupParents {
            cgroupSerial += 1
            let start = monotonicNanos()
            for parent in parents {
                let directory = parent + "/cphases-\(getpid())-\(cgroupSerial)"
                guard mkdir(directory, 0o755) == 0 else {
                    cgroupDirectories.forEach { rmdir($0) }
                    throw BenchmarkFailure("mkdir \(directory): \(String(cString: strerror(errno)))")
                }
                cgroupDirectories.append(directory)
                if parent.contains("/memory") {
                    _ = Self.write("\(512 << 20)", to: directory + "/memory.limit_in_bytes")
                    _ = Self.write("\(512 << 20)", to: directory + "/memory.memsw.limit_in_bytes")
                    _ = Self.write("0", to: directory + "/memory.swappiness")
                } else {
                    _ = Self.write("256", to: directory + "/pids.max")
                }
            }
            setupTime = milliseconds(from: start, to: monotonicNanos())
        }
        var result = cphases_result()
        let procs = cgroupDirectories.map { strdup($0 + "/cgroup.procs")! }
        defer { procs.forEach { free($0) } }
        let procPointers = procs.map { UnsafePointer($0) }
        let status = cgroupDirectories.isEmpty ? runProbe(&result, uidBase: uidBase, procs: nil) : procPointers.withUnsafeBufferPointer {
            runProbe(&result, uidBase: uidBase, procs: $0)
        }
        var removalTime: Double?
        if !cgroupDirectories.isEmpty {
            let start = monotonicNanos()
            for directory in cgroupDirectories {
                for _ in 0..<200 {
                    if rmdir(directory) == 0 || errno == ENOENT { break }
                    usleep(5000)
                }
            }
            removalTime = milliseconds(from: start, to: monotonicNanos())
        }
        guard status == 0 else {
            let steps = [
                "ok", "pipe", "clone3", "id maps", "credentials", "loopback", "root tmpfs", "directories", "binds",
                "/proc", "pivot_root", "report", "reap", "cgroup.procs",
            ]
            let step = Int(result.failed_step) < steps.count ? steps[Int(result.failed_step)] : "step \(result.failed_step)"
            throw BenchmarkFailure("the phase probe failed at \(step): \(String(cString: strerror(result.failed_errno)))")
        }
        let attached = cgroupDirectories.isEmpty ? nil : milliseconds(from: result.after_id_maps, to: result.after_cgroups)
        return KernelPhases(
            clone: milliseconds(from: result.before_clone, to: result.after_clone),
            idMaps: milliseconds(from: result.after_clone, to: result.after_id_maps),
            loopback: milliseconds(from: result.child_released, to: result.after_loopback),
            mounts: milliseconds(from: result.after_loopback, to: result.after_mounts),
            pivot: milliseconds(from: result.after_mounts, to: result.after_pivot),
            teardown: milliseconds(from: result.after_pivot, to: result.reaped),
            cgroupSetup: setupTime, cgroupAttach: attached, cgroupRemoval: removalTime,
            total: milliseconds(from: result.before_clone, to: result.reaped) + (setupTime ?? 0) + (removalTime ?? 0))
    }

    private func runProbe(_ result: inout cphases_result, uidBase: UInt32, procs: UnsafeBufferPointer<UnsafePointer<CChar>>?) -> Int32 {
        directories.withUnsafeBufferPointer { dirs in
            bindSources.withUnsafeBufferPointer { sources in
                bindTargets.withUnsafeBufferPointer { targets in
                    deviceSources.withUnsafeBufferPointer { deviceSources in
                        deviceTargets.withUnsafeBufferPointer { deviceTargets in
                            var config = cphases_config(
                                directories: dirs.baseAddress!, directory_count: Int32(dirs.count),
                                bind_sources: sources.baseAddress!, bind_targets: targets.baseAddress!,
                                bind_count: Int32(sources.count), device_sources: deviceSources.baseAddress!,
                                device_targets: deviceTargets.baseAddress!, device_count: Int32(deviceSources.count),
                                uid_base: uidBase, cgroup_procs: procs?.baseAddress, cgroup_proc_count: Int32(procs?.count ?? 0))
                            return cphases_run(&config, &result)
                        }
                    }
                }
            }
        }
    }
}
