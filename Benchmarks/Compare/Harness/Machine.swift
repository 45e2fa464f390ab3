import BenchmarkWorkloads
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The machine, the software and the moment a run describes.
struct Machine {
    var kernel: String
    var cores: Int
    var memoryGiB: Double
    var cpu: String
    var date: String
    var commit: String
    var node: String
    var bwrap: String
    var wrk: String
    var swift: String
    var initProgram: String

    static func describe(repository: String, host: NodeHost) -> Machine {
        var names = utsname()
        uname(&names)
        let kernel = withUnsafeBytes(of: &names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        let totalKiB = meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { Double($0.split(separator: " ")[1]) } ?? 0
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let cpu = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces) } ?? "unknown"
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        var commit = (try? NodeHost.output(["/usr/bin/git", "-C", repository, "rev-parse", "--short", "HEAD"]))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        if commit.isEmpty { commit = "unknown" }
        let status = (try? NodeHost.output(["/usr/bin/git", "-C", repository, "status", "--porcelain", "--untracked-files=no"])) ?? ""
        if !status.isEmpty { commit += " (with uncommitted changes)" }
        let wrk = NodeHost.findExecutable("wrk").flatMap { try? NodeHost.output([$0, "-v"]) }?
            .split(separator: "\n").first.map(String.init) ?? "not installed"
        let swift = (try? NodeHost.output([NodeHost.findExecutable("swift") ?? "/usr/bin/swift", "--version"]))?
            .split(separator: "\n").first.map(String.init) ?? "unknown"
        return Machine(
            kernel: kernel, cores: sysconf(Int32(_SC_NPROCESSORS_ONLN)), memoryGiB: totalKiB / 1024 / 1024, cpu: cpu,
            date: formatter.string(from: Date()), commit: commit, node: host.version,
            bwrap: host.bwrapVersion ?? "not installed", wrk: wrk.isEmpty ? "installed" : wrk, swift: swift,
            initProgram: Self.initProgram(repository: repository))
    }

    /// The secure-exec-init SecureExec will pick, by its own search order (RuntimeAssets).
    static func initProgram(repository: String) -> String {
        let executableDirectory = ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "")
        let candidates = [
            ProcessInfo.processInfo.environment["SECURE_EXEC_INIT"],
            (executableDirectory as NSString).deletingLastPathComponent + "/secure-exec-init",
            repository + "/.build/debug/secure-exec-init",
            repository + "/.build/release/secure-exec-init",
        ]
        return candidates.compactMap { $0 }.first { access($0, X_OK) == 0 } ?? "not found"
    }

    static func loadAverage() -> String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "").split(separator: " ").prefix(3)
            .joined(separator: " ")
    }
}
