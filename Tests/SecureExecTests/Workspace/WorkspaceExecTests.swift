import Foundation
import SecureExec
import TestSupport
import Testing

/// `exec` and `run` (Exec.swift): a guest run to completion gives back its
/// exact output, exit code and duration; a timeout kills it for good; `run`
/// decodes what the guest hands to `__return` and turns every failure into
/// `.guestFailed`; stdin reaches the guest in order and its end is seen.
@Suite("Workspace: exec, run and stdin", .needsRoot, .timeLimit(.minutes(2)))
struct WorkspaceExecTests {
    @Test("exec returns stdout and stderr separately, the exit code and a positive duration")
    func execOutputAndExitCode() async throws {
        try await withNodeRuntime { runtime in
            let result = try await runtime.exec(
                """
                process.stdout.write("out");
                process.stderr.write("err");
                process.exitCode = 2;
                """)
            #expect(result.stdoutText == "out")
            #expect(result.stderrText == "err")
            #expect(result.stdout == Array("out".utf8))
            #expect(result.termination == .exited(2))
            #expect(result.exitCode == 2)
            #expect(!result.timedOut)
            #expect(!result.truncated)
            #expect(result.duration > .zero)
            #expect(result.duration < .seconds(30))
        }
    }

    @Test("exec passes arguments, environment and working directory")
    func execArgumentsEnvironmentDirectory() async throws {
        try await withNodeRuntime { runtime in
            try await runtime.makeDirectory("/workspace/sub")
            let result = try await runtime.exec(
                "console.log(JSON.stringify([process.argv.slice(2), process.env.GREETING, process.cwd()]));",
                arguments: ["one", "two words"], environment: ["GREETING": "hi there"], workingDirectory: "/workspace/sub")
            #expect(result.termination == .exited(0), "stderr: \(result.stderrText)")
            #expect(result.stdoutText == #"[["one","two words"],"hi there","/workspace/sub"]"# + "\n")
        }
    }

    @Test("exec past its timeout ends .timedOut, and the process is gone afterwards")
    func execTimeout() async throws {
        let marker = "workspace-forever-\(UUID().uuidString.lowercased())"
        try await withNodeRuntime { runtime in
            // Seen on the host while it runs, so "gone afterwards" is not vacuous.
            let seenRunning = Task {
                let deadline = ContinuousClock.now + .seconds(10)
                while ContinuousClock.now < deadline {
                    if !workspaceHostProcesses(containing: marker).isEmpty { return true }
                    try? await Task.sleep(for: .milliseconds(10))
                }
                return false
            }
            let result = try await runtime.exec(
                "setInterval(() => {}, 1000);", arguments: [marker], timeout: .seconds(2))  // long enough to be seen under load
            #expect(await seenRunning.value, "the guest never showed up in the host's /proc")
            #expect(result.termination == .timedOut)
            #expect(result.timedOut)
            #expect(result.exitCode == nil)
            #expect(result.duration >= .seconds(2))
            #expect(result.duration < .seconds(12))
            #expect(workspaceHostProcesses(containing: marker) == [], "the timed-out guest still runs")

            let after = try await runtime.exec("console.log(1)")
            #expect(after.termination == .exited(0))
            #expect(after.stdoutText == "1\n")
        }
        #expect(workspaceHostProcesses(containing: marker) == [])
    }

    @Test("what a guest wrote before its timeout is in the result")
    func execTimeoutKeepsOutput() async throws {
        try await withNodeRuntime { runtime in
            // More than a pipe holds, written at once; then it hangs until the
            // timeout (generous, so a loaded machine still starts node in time).
            let result = try await runtime.exec(
                """
                process.stdout.write("x".repeat(256 * 1024) + "\\n");
                process.stderr.write("on stderr\\n");
                setInterval(() => {}, 1000);
                """, timeout: .seconds(4))
            #expect(result.termination == .timedOut)
            #expect(result.stdout.count == 256 * 1024 + 1)
            #expect(result.stdoutText == String(repeating: "x", count: 256 * 1024) + "\n")
            #expect(result.stderrText == "on stderr\n")
        }
    }

    struct Widget: Decodable, Equatable {
        var name: String
        var count: Int
        var tags: [String]
    }

    @Test("run decodes the value the guest passes to __return, apart from its stdout")
    func runReturnsStruct() async throws {
        try await withNodeRuntime { runtime in
            let widget = try await runtime.run(
                """
                console.log("noise on stdout");
                __return({ name: "gadget", count: 1 });
                __return({ name: "widget", count: 42, tags: ["a", "b", "c"] });
                """, as: Widget.self)
            #expect(widget == Widget(name: "widget", count: 42, tags: ["a", "b", "c"]))

            let fromModule = try await runtime.run(
                """
                import { setTimeout } from "node:timers/promises";
                await setTimeout(10);
                __return({ name: "esm", count: -7, tags: [] });
                """, as: Widget.self)
            #expect(fromModule == Widget(name: "esm", count: -7, tags: []))
        }
    }

    @Test("run where the guest throws is guestFailed with the guest's message")
    func runGuestThrows() async throws {
        try await withNodeRuntime { runtime in
            let error = await expectError(.guestFailed) {
                try await runtime.run(#"throw new Error("boom-123");"#, as: Widget.self)
            }
            #expect(error?.message.contains("boom-123") == true, "\(String(describing: error))")
        }
    }

    @Test("run where the guest never calls __return is guestFailed")
    func runWithoutReturn() async throws {
        try await withNodeRuntime { runtime in
            let error = await expectError(.guestFailed) {
                try await runtime.run(#"console.log("forgot to return");"#, as: Widget.self)
            }
            #expect(error?.message.contains("__return") == true, "\(String(describing: error))")
            // A value that does not decode is a different failure, and so is a timeout.
            await expectError(.decodingFailed) {
                try await runtime.run(#"__return({ name: 5 });"#, as: Widget.self)
            }
            await expectError(.timeout) {
                try await runtime.run("setInterval(() => {}, 1000);", as: Widget.self, timeout: .milliseconds(300))
            }
            // run takes stdin like exec.
            let echoed = try await runtime.run(
                "let text = ''; process.stdin.on('data', (d) => text += d); process.stdin.on('end', () => __return(text));",
                as: String.self, stdin: Array("from the host".utf8))
            #expect(echoed == "from the host")
        }
    }

    @Test("stdin lines reach the guest in order, and closeStdin ends it")
    func stdinEcho() async throws {
        try await withNodeRuntime { runtime in
            let stdout = GuestOutput()
            let stderr = GuestOutput()
            let guest = try await runtime.spawn(
                """
                const lines = require("readline").createInterface({ input: process.stdin });
                lines.on("line", (line) => console.log(line.toUpperCase()));
                lines.on("close", () => console.log("end of input"));
                """, onStdout: stdout.sink, onStderr: stderr.sink)
            do {
                try await guest.writeStdin("alpha\n")
                try await guest.writeStdin("beta\n")
                try await guest.writeStdin(Array("gamma\n".utf8))
                try await stdout.waitUntilContains("GAMMA\n")
                #expect(stdout.lines == ["ALPHA", "BETA", "GAMMA"])
                #expect(guest.termination == nil, "the guest must wait for more input")
                guest.closeStdin()
                #expect(try await guest.wait() == .exited(0), "stderr: \(stderr.text)")
                #expect(stdout.lines == ["ALPHA", "BETA", "GAMMA", "end of input"])
            } catch {
                guest.kill(.kill)
                _ = try await guest.wait()
                throw error
            }
        }
    }

    @Test("exec(stdin:) passes the bytes exactly and then end-of-file")
    func execStdin() async throws {
        try await withNodeRuntime { runtime in
            let input: [UInt8] = Array("one\ntwo\n".utf8) + [0, 0xff, 0x80]
            let result = try await runtime.exec(
                """
                const chunks = [];
                process.stdin.on("data", (chunk) => chunks.push(chunk));
                process.stdin.on("end", () => console.log(Buffer.concat(chunks).toString("hex")));
                """, stdin: input)
            #expect(result.termination == .exited(0), "stderr: \(result.stderrText)")
            #expect(result.stdoutText == "6f6e650a74776f0a00ff80\n")
        }
    }
}
