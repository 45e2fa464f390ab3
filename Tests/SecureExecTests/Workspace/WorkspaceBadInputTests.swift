import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Bad input is refused with a typed error and leaves the runtime usable
/// (README, "The API": bad input): a write far past the workspace's
/// size limit stops at ENOSPC without reading the rest of its source, and
/// signals are named or refused.
@Suite("Workspace: bad input", .needsRoot, .timeLimit(.minutes(2)))
struct WorkspaceBadInputTests {
    @Test("a 2 GiB streamed write into a 64 MiB workspace fails with ENOSPC soon after the limit, and the runtime stays usable")
    func writePastWorkspaceLimit() async throws {
        try await withNodeRuntime(limits: Limits(workspaceBytes: 64 << 20)) { runtime in
            let chunks = WorkspaceRepeatedChunks(chunk: [UInt8](repeating: 0x61, count: 1 << 20), count: 2048)
            await expectError(.ioFailed, errno: ENOSPC) {
                try await runtime.writeFile("/workspace/huge.bin", contentsOf: chunks)
            }
            // It stopped reading its source soon after the limit, not at 2 GiB.
            #expect(chunks.pulled.count >= 60, "pulled \(chunks.pulled.count) MiB")
            #expect(chunks.pulled.count < 128, "pulled \(chunks.pulled.count) MiB of 2048")

            // Still usable: a small write, and a guest that runs. (Checked one
            // by one so a failure of the first does not hide the second.)
            let listing = try await runtime.workspaceListing(of: "/workspace", includingEntryFiles: true)
            do {
                try await runtime.writeFile("/workspace/small.txt", text: "still here")
                #expect(try await runtime.readTextFile("/workspace/small.txt") == "still here")
            } catch {
                Issue.record("a small writeFile after the failed one: \(error); the workspace holds \(listing)")
            }
            do {
                let result = try await runtime.exec(#"console.log("still runs");"#)
                #expect(result.termination == .exited(0), "stderr: \(result.stderrText)")
                #expect(result.stdoutText == "still runs\n")
            } catch {
                Issue.record("exec after the failed write: \(error); the workspace holds \(listing)")
            }
        }
    }

    @Test("a 2 GiB streamed write into /tmp (64 MiB) fails with ENOSPC too")
    func writePastTmpLimit() async throws {
        try await withNodeRuntime(limits: Limits(tmpBytes: 64 << 20)) { runtime in
            let chunks = WorkspaceRepeatedChunks(chunk: [UInt8](repeating: 0x62, count: 1 << 20), count: 2048)
            await expectError(.ioFailed, errno: ENOSPC) {
                try await runtime.writeFile("/tmp/huge.bin", contentsOf: chunks)
            }
            #expect(chunks.pulled.count < 128, "pulled \(chunks.pulled.count) MiB of 2048")
            let output = try await runtime.workspaceOutput("console.log(2 + 2)")
            #expect(output == "4\n")
        }
    }

    @Test("kill with a signal by name reaches the guest's handler")
    func killByName() async throws {
        try await withNodeRuntime { runtime in
            let stdout = GuestOutput()
            let stderr = GuestOutput()
            let guest = try await runtime.spawn(
                """
                process.on("SIGUSR1", () => { console.log("got SIGUSR1"); process.exit(0); });
                setInterval(() => {}, 1000);
                console.log("ready");
                """, onStdout: stdout.sink, onStderr: stderr.sink)
            do {
                try await stdout.waitUntilContains("ready\n")
                guest.kill(try Signal(named: "USR1"))
                #expect(try await guest.wait() == .exited(0), "stderr: \(stderr.text)")
                #expect(stdout.text == "ready\ngot SIGUSR1\n")
            } catch {
                guest.kill(.kill)
                _ = try await guest.wait()
                throw error
            }
        }
    }
}
