import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A guest's stdio and entry file are the guest's to play with; nothing it
/// does with them may stall init or bring the supervisor down.
@Suite("Guest stdio and entry files", .needsRoot, .timeLimit(.minutes(1)))
struct GuestStdioTests {
    @Test("a guest cannot reopen its closed stdout for writing through /proc; the host carries on")
    func stdoutNotReopenable() async throws {
        try await withRuntime { runtime in
            // With a pipe, the guest could hang up its stdout and then make a
            // writer again from a read end it opened through /proc.
            let finished = try await runtime.runGuest(
                """
                const fs = require("node:fs");
                let outcome;
                try {
                  const reader = fs.openSync("/proc/self/fd/1", "r");
                  fs.closeSync(1);
                  fs.openSync("/proc/self/fd/" + reader, "w");
                  outcome = "reopened";
                } catch (error) {
                  outcome = error.code;
                }
                fs.writeSync(2, outcome);
                """)
            #expect(finished.termination == .exited(0), "\(finished)")
            #expect(finished.stderr != "reopened", "\(finished)")
            // The supervisor still serves this runtime.
            let next = try await runtime.runGuest("console.log('still here')")
            #expect(next.line == "still here", "\(next)")
        }
    }

    @Test("a FIFO planted where init writes the next guest's code neither blocks init nor the spawn")
    func plantedEntryFIFO() async throws {
        try await withPrivateHostDirectory { directory in
            // Entry files are named by request id; plant FIFOs for the first ones.
            for id in 1...64 {
                let path = "\(directory)/.secure-exec-entry-\(id).js"
                guard mkfifo(path, 0o666) == 0, chown(path, MountIDs.owner, MountIDs.group) == 0 else {
                    throw HostCallError(step: "mkfifo \(path)", errno: errno)
                }
            }
            try await withNodeRuntime(workspace: Workspace(host: directory, mode: .readWrite)) { runtime in
                let result = try await runtime.exec("console.log('ran')", timeout: .seconds(20))
                #expect(result.termination == .exited(0), "\(result.stderrText)")
                #expect(result.stdoutText == "ran\n")
            }
        }
    }
}
