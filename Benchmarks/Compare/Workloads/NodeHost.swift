import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The host's `node` and how the harness runs it bare and under bubblewrap.
///
/// Both run exactly what SecureExec runs: `node --experimental-detect-module
/// <entry>.js` with the guest's code in the entry file, and an environment
/// with nothing of the host's (PATH, HOME, TMPDIR only).
public struct NodeHost: Sendable {
    /// node's path as found on PATH, and with symlinks resolved.
    public let node: String
    public let version: String
    /// The dynamic loader and every library node loads: (host file, path the loader opens).
    public let runtimeFiles: [(source: String, target: String)]
    public let bwrap: String?
    public let bwrapVersion: String?
    /// A directory the harness owns (entry files, the bwrap workspace).
    public let scratch: String

    public static func discover() throws -> NodeHost {
        let path = ProcessInfo.processInfo.environment["SECURE_EXEC_NODE"]
            ?? findExecutable("node") ?? { () -> String? in nil }()
        guard let path else { throw BenchmarkFailure("node is not on PATH") }
        let node = (path as NSString).resolvingSymlinksInPath
        let version = try Self.output([node, "--version"]).trimmingCharacters(in: .whitespacesAndNewlines)
        var files: [(String, String)] = []
        for line in try Self.output([findExecutable("ldd") ?? "/usr/bin/ldd", node]).split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            var target: Substring?
            if let arrow = words.firstIndex(of: "=>"), arrow + 1 < words.count, words[arrow + 1].hasPrefix("/") {
                target = words[arrow + 1]
            } else if let first = words.first, first.hasPrefix("/") {
                target = first
            }
            if let target {
                files.append(((String(target) as NSString).resolvingSymlinksInPath, String(target)))
            }
        }
        if FileManager.default.fileExists(atPath: "/etc/ld.so.cache") { files.append(("/etc/ld.so.cache", "/etc/ld.so.cache")) }
        let bwrap = findExecutable("bwrap")
        let bwrapVersion = try bwrap.map { try Self.output([$0, "--version"]).trimmingCharacters(in: .whitespacesAndNewlines) }
        let scratch = NSTemporaryDirectory() + "secure-exec-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: scratch + "/workspace", withIntermediateDirectories: true)
        return NodeHost(
            node: node, version: version, runtimeFiles: files, bwrap: bwrap, bwrapVersion: bwrapVersion, scratch: scratch)
    }

    /// The guest's environment, as SecureExec gives it (plus `extra`).
    public func environment(_ extra: [String: String] = [:], home: String) -> [String: String] {
        ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": "/tmp"].merging(extra) { $1 }
    }

    /// Writes `code` to `<scratch>/workspace/<name>` and returns the file's name.
    public func writeEntry(_ code: String, name: String) throws -> String {
        try Data(code.utf8).write(to: URL(fileURLWithPath: scratch + "/workspace/" + name))
        return name
    }

    /// Bare node on the host: `node --experimental-detect-module <scratch>/workspace/<entry>`.
    public func bareArguments(entry: String) -> [String] {
        [node, "--experimental-detect-module", scratch + "/workspace/" + entry]
    }

    /// The same node under bubblewrap with SecureExec's isolation: new user,
    /// net (loopback only), mount, pid, ipc, uts and cgroup namespaces, a
    /// new session, and a read-only tmpfs root holding only node, its
    /// libraries, /dev, /proc, a /tmp tmpfs and the workspace (read-only).
    public func bwrapArguments(_ command: [String]) throws -> [String] {
        guard let bwrap else { throw BenchmarkFailure("bwrap is not installed (make bench-deps)") }
        var arguments = [
            bwrap, "--unshare-user", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup", "--die-with-parent", "--new-session",
        ]
        arguments += ["--ro-bind", node, node]
        if let program = command.first, program != node { arguments += ["--ro-bind", program, program] }
        for file in runtimeFiles { arguments += ["--ro-bind", file.source, file.target] }
        arguments += [
            "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--ro-bind", scratch + "/workspace", "/workspace",
            "--chdir", "/workspace", "--remount-ro", "/",
        ]
        return arguments + command
    }

    public func bwrapArguments(entry: String) throws -> [String] {
        try bwrapArguments([node, "--experimental-detect-module", "/workspace/" + entry])
    }

    /// Runs a short command and returns its stdout (for versions and ldd).
    public static func output(_ arguments: [String]) throws -> String {
        let process = try HostProcess(arguments, environment: ["PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C"])
        try process.readToEnd(timeout: .seconds(20))
        process.wait()
        return process.stdout
    }

    public static func findExecutable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }
}
