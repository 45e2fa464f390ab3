import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// What this process holds, read from /proc and /sys/fs/cgroup: the numbers
/// the churn and memory workloads compare before and after.
public struct HostCensus: Sendable, Equatable {
    public var descriptors: Int
    public var threads: Int
    public var mountLines: Int
    /// SecureExec's cgroups for this process (`secure-exec-<pid>-*`) on every hierarchy.
    public var cgroups: Int
    public var residentKiB: Int
    /// Direct children (sandbox inits, launched programs), zombies included.
    public var children: Int

    public static func take() -> HostCensus {
        HostCensus(
            descriptors: entries("/proc/self/fd"), threads: entries("/proc/self/task"),
            mountLines: ((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "")
                .split(separator: "\n").count,
            cgroups: sandboxCgroups(), residentKiB: statusField("VmRSS", of: getpid()) ?? 0,
            children: children(of: getpid()).count)
    }

    /// The names of this process's threads (/proc/self/task/*/comm), sorted.
    public static func threadNames() -> [String] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.map { command(ofTask: $0) }.sorted()
    }

    private static func command(ofTask task: String) -> String {
        ((try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)) ?? "").trimmingCharacters(in: .newlines)
    }

    static func entries(_ directory: String) -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).count
    }

    /// Counts directories named `secure-exec-<this pid>-*` under /sys/fs/cgroup (at most 8 levels down).
    static func sandboxCgroups() -> Int {
        let prefix = "secure-exec-\(getpid())-"
        var count = 0
        func walk(_ path: String, depth: Int) {
            guard depth < 8, let names = try? FileManager.default.contentsOfDirectory(atPath: path) else { return }
            for name in names {
                let child = path + "/" + name
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: child, isDirectory: &isDirectory), isDirectory.boolValue else {
                    continue
                }
                if name.hasPrefix(prefix) { count += 1 }
                walk(child, depth: depth + 1)
            }
        }
        walk("/sys/fs/cgroup", depth: 0)
        return count
    }

    /// A `Name:  value kB` field of /proc/<pid>/status, in KiB.
    public static func statusField(_ name: String, of pid: pid_t) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            return Int(line.dropFirst(name.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }

    /// Proportional set size of `pid` in KiB (shared pages split among their users), from smaps_rollup.
    public static func proportionalKiB(of pid: pid_t) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("Pss:") {
            return Int(line.dropFirst(4).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }

    /// The children of `pid` (from every thread's children list).
    public static func children(of pid: pid_t) -> [pid_t] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        var result: [pid_t] = []
        for task in tasks {
            let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? ""
            result += text.split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        return result
    }

    /// The command name of `pid` (/proc/<pid>/comm).
    public static func command(of pid: pid_t) -> String {
        ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "").trimmingCharacters(in: .newlines)
    }

    /// The first word of /proc/<pid>/cmdline.
    public static func programName(of pid: pid_t) -> String {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return "" }
        return String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// This process's sandbox inits: children started as `secure-exec-init`
    /// (their comm is the sealed memfd's name, so argv[0] tells them apart).
    public static func sandboxInits() -> [pid_t] {
        children(of: getpid()).filter { programName(of: $0) == "secure-exec-init" }
    }
}
