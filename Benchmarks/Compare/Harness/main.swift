// secure-exec-compare: the same workloads as bare `node`, under `bwrap` with
// SecureExec's isolation, and in SecureExec, alternated in one process;
// prints medians and ratios to bare node and writes BENCHMARKS.md.
//
//   swift run -c release --package-path Benchmarks secure-exec-compare            # full run (make bench)
//   swift run --package-path Benchmarks secure-exec-compare --smoke               # one iteration of each, no file
import BenchmarkWorkloads
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Benchmarks/Compare/Harness/main.swift -> the repository root.
let repository = ((#filePath as NSString).deletingLastPathComponent as NSString)
    .deletingLastPathComponent.replacingOccurrences(of: "/Benchmarks/Compare", with: "")

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("secure-exec-compare: \(message)\n".utf8))
    exit(1)
}

let options: Options
do {
    options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    fail("\(error)")
}
guard geteuid() == 0 else { fail("SecureExec needs root (each sandbox maps its own range of host uids)") }

// 200 sandboxes hold a few descriptors each.
var limit = rlimit()
getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
limit.rlim_cur = limit.rlim_max
setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)

let host: NodeHost
do {
    host = try NodeHost.discover()
} catch {
    fail("\(error)")
}
// Removed however the harness ends (exit() skips top-level defers).
nonisolated(unsafe) var scratchDirectory: String? = host.scratch
atexit {
    if let scratchDirectory { try? FileManager.default.removeItem(atPath: scratchDirectory) }
}

let comparison = Comparison(options: options, host: host)
let machine = Machine.describe(repository: repository, host: host)
let loadBefore = Machine.loadAverage()
comparison.say("secure-exec-compare\(options.smoke ? " --smoke" : ""): node \(host.version), \(machine.bwrap), init \(machine.initProgram), load \(loadBefore)")
if !comparison.hasBwrap { comparison.notes.append("bwrap is not installed: its column is empty (make bench-deps installs it).") }

var failures: [String] = []
let steps: [(String, () async throws -> Void)] = [
    ("cold", comparison.coldStart),
    ("first-byte", comparison.firstByte),
    ("listen", comparison.listen),
    ("fetch", comparison.network),
    ("memory", comparison.memory),
    ("churn", comparison.churn),
    ("project", comparison.projectStart),
    ("roots", comparison.roots),
    ("files", comparison.fileTransfers),
    ("egress", comparison.egress),
]
for (name, step) in steps where options.runs(name) {
    let started = monotonicNanos()
    comparison.say("• \(name) …")
    do {
        try await step()
        comparison.say(String(format: "  done in %.1f s", Double(monotonicNanos() - started) / 1e9))
    } catch {
        failures.append("\(name): \(error)")
        comparison.say("  FAILED: \(error)")
    }
}
let loadAfter = Machine.loadAverage()

// The terminal report.
print(Format.textTable(header: Format.comparisonHeader, rows: comparison.rows.map(Format.comparisonCells)))
if !comparison.phaseRows.isEmpty {
    print("\nCold start by phase (medians, ms)")
    print(Format.textTable(header: ["phase", "bare node", "bwrap", "SecureExec", "SecureExec, no cgroup limits"], rows: comparison.phaseRows))
    print(Format.textTable(header: ["kernel step (C probe, same namespaces and root)", "ms"], rows: comparison.kernelRows))
    for line in comparison.coldStartAnalysis { print("- " + line) }
}
if !comparison.memoryRows.isEmpty {
    print("\nIdle sandboxes")
    print(Format.textTable(header: ["", "bare node", "bwrap", "SecureExec"], rows: comparison.memoryRows))
}
if !comparison.churnRows.isEmpty {
    print("\nChurn: \(options.churnCycles) create/dispose cycles")
    print(Format.textTable(header: ["", "before", "halfway", "right after", "settled"], rows: comparison.churnRows))
}
if !comparison.projectRows.isEmpty {
    print("\nA 1,000-file project: create() + one guest reading it (medians)")
    print(Format.textTable(header: ["how", "ms", "ratio to copy"], rows: comparison.projectRows))
}
if !comparison.rootRows.isEmpty {
    print("\nRoot images: .standard vs .minimal (medians, ms)")
    print(Format.textTable(header: Format.rootHeader, rows: comparison.rootRows))
}
if !comparison.fileRows.isEmpty {
    print("\nWhole files between host and sandbox (medians of \(options.fileRounds) rounds)")
    print(Format.textTable(header: FileTransferRow.header, rows: comparison.fileRows.map(\.cells)))
}
if !comparison.egressRows.isEmpty {
    print("\nEgress: the same node fetch client direct vs through SecureExec's gateway (medians of \(options.rounds) runs each)")
    print(Format.textTable(header: EgressRows.header, rows: comparison.egressRows))
    for line in comparison.egressAnalysis { print("- " + line) }
}
print(options.smoke ? "\nGoals (one iteration each: not a measurement)" : "\nGoals")
for goal in comparison.goals {
    print("  [\(goal.holds == true ? "holds" : goal.holds == false ? "MISSED" : "n/a")] \(goal.goal): \(goal.evidence)")
}
for note in comparison.notes { print("note: \(note)") }

if !failures.isEmpty {
    fail("\(failures.count) workload(s) failed:\n  " + failures.joined(separator: "\n  "))
}
if options.smoke {
    print("smoke run passed (nothing written)")
    exit(0)
}
if options.only != nil && options.output == nil {
    print("partial run (--only): BENCHMARKS.md not written")
    exit(0)
}
let path = options.output ?? repository + "/BENCHMARKS.md"
let document = BenchmarksDocument(
    machine: machine, options: options, comparison: comparison, loadBefore: loadBefore, loadAfter: loadAfter
).markdown
do {
    try document.write(toFile: path, atomically: true, encoding: .utf8)
    print("wrote \(path)")
} catch {
    fail("could not write \(path): \(error)")
}
