import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A supervisor that dies without disposing (SIGKILL) leaves its sandbox
/// cgroups behind, recorded under /run/secure-exec/cgroups.
/// `NodeRuntime.reclaimLeftovers()` removes them once they are empty and says
/// so, one line each; a cgroup that still holds a process, and every cgroup of
/// a live sandbox, is left alone.
@Suite("Kernel resources: leftovers of killed supervisors are reclaimed", .serialized, .needsRoot, .timeLimit(.minutes(2)))
struct LeftoverReclaimTests {
    /// Moves `pid` into the cgroup at `directory` (v1 or v2: both take a pid in cgroup.procs).
    static func move(_ pid: Int32, into directory: String) throws {
        let fd = open(directory + "/cgroup.procs", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw HostCallError(step: "open \(directory)/cgroup.procs", errno: errno) }
        defer { close(fd) }
        let text = Array("\(pid)".utf8)
        guard text.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == text.count else {
            throw HostCallError(step: "move \(pid) into \(directory)", errno: errno)
        }
    }

    static func isDirectory(_ path: String) -> Bool {
        guard let info = try? HostFiles.status(path) else { return false }
        return info.st_mode & S_IFMT == S_IFDIR
    }

    static func isEmptyCgroup(_ directory: String) -> Bool {
        (HostCensus.readText(directory + "/cgroup.procs") ?? "x").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
    }

    @Test("a SIGKILLed supervisor's cgroups are reclaimed once empty, named in the result; live ones never")
    func reclaimAfterKill() async throws {
        var placeholder: HostProgram?
        var host: HostProgram?
        defer {
            placeholder?.stop()
            host?.stop()
            if let host { KernelLeftovers.clean(supervisors: [host.pid]) }
        }
        try await withRuntime { live in
            // The live sandbox of this process (its first create also ran this process's own reclaim pass).
            let liveInit = try await KernelSandbox.initPID(of: live)
            let liveDirectories = ["memory", "pids"].compactMap { KernelProc.cgroupDirectory(of: liveInit, controller: $0)?.path }
            try #require(!liveDirectories.isEmpty && liveDirectories.allSatisfy { $0.contains("/secure-exec-") }, "\(liveDirectories)")

            let program = try TestHost.start(["kernel-leftover-\(UUID().uuidString)"])
            host = program
            try await program.waitUntilReady()
            let inits = KernelSandbox.inits(ofSupervisor: program.pid)
            try #require(inits.count == 1, "supervisor \(program.pid) has inits \(inits)")
            let guests = HostCensus.children(of: inits[0])
            let directories = Array(Set(["memory", "pids"].compactMap { KernelProc.cgroupDirectory(of: inits[0], controller: $0)?.path })).sorted()
            try #require(!directories.isEmpty && directories.allSatisfy { $0.contains("/secure-exec-\(program.pid)-") }, "\(directories)")
            let records = KernelLeftovers.records(ofSupervisor: program.pid)
            try #require(records.count == 1, "records of \(program.pid): \(records)")
            let (recordName, recorded) = records.first!
            #expect(Set(recorded) == Set(directories), "the record lists \(recorded), the sandbox is in \(directories)")

            // A process of the test's own sits in the sandbox's cgroups, so no
            // other supervisor on the machine (whose first create reclaims too)
            // can take them before this test's calls.
            let sleeper = try HostProgram("/bin/sleep", arguments: ["600"])
            placeholder = sleeper
            for directory in directories { try Self.move(sleeper.pid, into: directory) }

            kill(program.pid, SIGKILL)
            _ = try await program.waitForExit(includingOutput: false, timeout: .seconds(10))
            let sandboxGone = await poll(for: .seconds(10)) {
                (inits + guests.map(\.pid)).allSatisfy { HostCensus.process($0).map { $0.state == "Z" } ?? true }
            }
            try #require(sandboxGone, "the killed supervisor's sandbox still runs")
            #expect(FileManager.default.fileExists(atPath: KernelLeftovers.directory + "/" + recordName), "the record vanished with its supervisor")
            #expect(directories.allSatisfy(Self.isDirectory), "the cgroups vanished with their supervisor")

            // Not empty (the sleeper): left alone, record and all.
            let whileOccupied = NodeRuntime.reclaimLeftovers()
            #expect(!whileOccupied.contains { line in directories.contains { line.contains($0) } }, "\(whileOccupied)")
            #expect(directories.allSatisfy(Self.isDirectory), "a cgroup with a process in it was removed")
            #expect(FileManager.default.fileExists(atPath: KernelLeftovers.directory + "/" + recordName))

            // Empty: reclaimed and named.
            sleeper.stop()
            let emptied = await poll(for: .seconds(5)) { directories.allSatisfy(Self.isEmptyCgroup) }
            try #require(emptied, "the sleeper's cgroups did not empty")
            var lines: [String] = []
            for _ in 0..<20 {
                lines += NodeRuntime.reclaimLeftovers()
                if directories.allSatisfy({ directory in lines.contains { $0.contains(directory) } || !Self.isDirectory(directory) }) {
                    break
                }
                try await Task.sleep(for: .milliseconds(100))  // the kernel may still be tearing the last task down
            }
            // Another supervisor starting meanwhile (the CLI suites run beside
            // this one) reclaims on its first create too: then it names them,
            // not this call, and they are gone all the same.
            let reclaimedElsewhere = lines.isEmpty && directories.allSatisfy { !Self.isDirectory($0) }
            for directory in directories {
                #expect(reclaimedElsewhere || lines.contains { $0.contains(directory) }, "no line names \(directory): \(lines)")
                #expect(!Self.isDirectory(directory), "\(directory) is still there")
            }
            // Another supervisor reclaiming removes the record just after the cgroups.
            let recordGone = await poll(for: .seconds(5)) {
                !FileManager.default.fileExists(atPath: KernelLeftovers.directory + "/" + recordName)
            }
            #expect(recordGone, "the record outlived its cgroups")

            // The live sandbox of this process is untouched and still works.
            for directory in liveDirectories { #expect(Self.isDirectory(directory), "the live sandbox's \(directory) was removed") }
            #expect(!lines.contains { line in liveDirectories.contains { line.contains($0) } })
            let result = try await live.exec("console.log(6 * 7)", timeout: .seconds(20))
            #expect(result.termination == .exited(0) && result.stdoutText == "42\n", "\(result.termination) \(result.stderrText)")
        }
    }

    @Test("reclaimLeftovers with nothing of ours to reclaim removes no live sandbox's cgroup")
    func reclaimSparesLiveSandboxes() async throws {
        try await withRuntime { first in
            try await withRuntime { second in
                var directories: [String] = []
                for runtime in [first, second] {
                    let pid = try await KernelSandbox.initPID(of: runtime)
                    directories += ["memory", "pids"].compactMap { KernelProc.cgroupDirectory(of: pid, controller: $0)?.path }
                }
                try #require(directories.count >= 2)
                let lines = NodeRuntime.reclaimLeftovers()
                #expect(!lines.contains { line in directories.contains { line.contains($0) } }, "\(lines)")
                for directory in directories { #expect(Self.isDirectory(directory), "\(directory) was removed") }
                for runtime in [first, second] {
                    let result = try await runtime.exec("console.log('alive')", timeout: .seconds(20))
                    #expect(result.stdoutText == "alive\n", "\(result.termination) \(result.stderrText)")
                }
            }
        }
    }
}
