import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The `secure-exec` CLI's lifecycle, bounds and reasons, run as a real
/// process: one Ctrl-C always ends `run` and `serve` (SIGTERM, then SIGKILL
/// after the grace period), a second kills at once, the last line says how
/// the guest ended; no input traps; limits and truncation are named.
@Suite("CLI lifecycle", .needsRoot, .timeLimit(.minutes(2)))
struct CLILifecycleTests {
    static var cli: String { CLITests.cli }

    /// A guest that ignores SIGTERM, says so when it gets one, and prints
    /// "ready" once its handler is in place.
    static let stubbornGuest = """
        process.on("SIGTERM", () => console.log("got SIGTERM"));
        setInterval(() => {}, 1000);
        console.log("ready");
        """

    /// A server that ignores SIGTERM.
    static let stubbornServer = """
        process.on("SIGTERM", () => console.log("got SIGTERM"));
        require("node:http").createServer((req, res) => res.end("served")).listen(3000, "127.0.0.1");
        """

    /// Runs `body` with the path of `stubbornServer` written to a fresh host directory, removed afterwards.
    func withStubbornServer<T>(_ body: (String) async throws -> T) async throws -> T {
        try await withHostDirectory { directory in
            try HostFiles.write(directory + "/server.js", Self.stubbornServer)
            return try await body(directory + "/server.js")
        }
    }

    // MARK: - One signal always ends it

    @Test("run: one SIGINT ends a guest that ignores SIGTERM (SIGKILL after the grace) and says so")
    func runStubbornGuest() async throws {
        try await withCLI(Self.cli, ["run", "-e", Self.stubbornGuest]) { program in
            try await program.stdout.waitUntilContains("ready", timeout: .seconds(30))
            kill(program.pid, SIGINT)
            // 1 s of grace plus a generous margin.
            let (status, reason) = try await program.waitForExit(timeout: .seconds(10))
            #expect(reason == .exit && status == 128 + SIGKILL, "stderr: \(program.stderr.text)")
            #expect(program.stdout.text.contains("got SIGTERM"), "the guest was asked first")
            #expect(program.stderr.lines.last == "secure-exec: guest killed by SIGKILL after it ignored SIGTERM for 1s")
        }
    }

    @Test("serve: one SIGINT ends a server that ignores SIGTERM, exits 0, removes the sandbox")
    func serveStubbornServer() async throws {
        try await withStubbornServer { server in
            try await withCLI(Self.cli, ["serve", server, "--port", "3000"]) { program in
                try await program.stderr.waitUntilContains("ready", timeout: .seconds(30))
                let sandbox = HostCensus.children(of: program.pid).filter(\.isSandboxInit)
                #expect(sandbox.count == 1)
                kill(program.pid, SIGINT)
                let (status, reason) = try await program.waitForExit(timeout: .seconds(10))
                #expect(reason == .exit && status == 0, "an operator's stop is a clean exit; stderr: \(program.stderr.text)")
                #expect(program.stdout.text.contains("got SIGTERM"))
                #expect(program.stderr.lines.last == "secure-exec: guest killed by SIGKILL after it ignored SIGTERM for 1s")
                let gone = await poll(for: .seconds(5)) { sandbox.allSatisfy { HostCensus.process($0.pid) == nil } }
                #expect(gone, "no sandbox process survives the CLI")
            }
        }
    }

    @Test("serve --json: SIGTERM with --grace 200ms ends with an exited event that says why")
    func serveJSONEnding() async throws {
        try await withStubbornServer { server in
            try await withCLI(Self.cli, ["serve", server, "--port", "3000", "--grace", "200ms", "--json"]) { program in
                try await program.stdout.waitUntilContains("\"listening\"", timeout: .seconds(30))
                kill(program.pid, SIGTERM)
                let (status, _) = try await program.waitForExit(timeout: .seconds(10))
                #expect(status == 0)
                let last = try #require(program.stdout.lines.last)
                let event = try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
                #expect(event["event"] as? String == "exited")
                #expect(event["reason"] as? String == "signaled")
                #expect(event["signal"] as? String == "SIGKILL")
                #expect(event["message"] as? String == "guest killed by SIGKILL after it ignored SIGTERM for 200ms")
            }
        }
    }

    @Test("a guest that exits on SIGTERM ends run with its own code and the line says so")
    func runCooperativeGuest() async throws {
        let guest = """
            process.on("SIGTERM", () => process.exit(0));
            setInterval(() => {}, 1000);
            console.log("ready");
            """
        try await withCLI(Self.cli, ["run", "-e", guest]) { program in
            try await program.stdout.waitUntilContains("ready", timeout: .seconds(30))
            kill(program.pid, SIGINT)
            let (status, _) = try await program.waitForExit(timeout: .seconds(10))
            #expect(status == 0)
            #expect(program.stderr.lines.last == "secure-exec: guest exited with code 0")
        }
    }

    /// With a grace of an hour, only the second signal can end it in time.
    @Test("a second SIGINT kills at once", arguments: ["run", "serve"])
    func secondInterruptKills(_ command: String) async throws {
        try await withStubbornServer { server in
            let arguments = command == "run"
                ? ["run", "--grace", "1h", "-e", Self.stubbornGuest]
                : ["serve", server, "--port", "3000", "--grace", "1h"]
            try await withCLI(Self.cli, arguments) { program in
                try await (command == "run" ? program.stdout : program.stderr)
                    .waitUntilContains("ready", timeout: .seconds(30))
                kill(program.pid, SIGINT)
                // The first reached the guest; the CLI is now in its hour of grace.
                try await program.stdout.waitUntilContains("got SIGTERM", timeout: .seconds(10))
                kill(program.pid, SIGINT)
                let (status, _) = try await program.waitForExit(timeout: .seconds(10))
                #expect(status == (command == "run" ? 128 + SIGKILL : 0), "stderr: \(program.stderr.text)")
                #expect(program.stderr.lines.last == "secure-exec: guest killed by SIGKILL at the second interrupt")
            }
        }
    }

    // MARK: - Reasons

    @Test("a guest ended by the memory limit: exit 123 and a line naming the limit")
    func outOfMemoryReason() async throws {
        let result = try await CLITests().run([
            "run", "--memory", "64M", "-e", "const keep = []; for (;;) keep.push(Buffer.alloc(1 << 20, 1));",
        ])
        #expect(result.status == 123)
        #expect(result.stderr.hasSuffix("secure-exec: guest killed: out of memory (limit 64 MiB)\n"), "stderr: \(result.stderr)")
    }

    @Test("a guest past --timeout: exit 124 and a line naming the timeout")
    func timeoutReason() async throws {
        let result = try await CLITests().run(["run", "--timeout", "1s", "-e", "setInterval(() => {}, 1000)"])
        #expect(result.status == 124)
        #expect(result.stderr == "secure-exec: guest killed: timed out after 1s\n")
    }

    @Test("a guest past --cpu: exit 122 and a line naming the limit")
    func cpuReason() async throws {
        let result = try await CLITests().run(["run", "--cpu", "1s", "-e", "for (;;) {}"])
        #expect(result.status == 122)
        #expect(result.stderr == "secure-exec: guest killed: CPU time limit (1s)\n")
    }

    @Test("with --json the reason is in the exited event and stderr stays the guest's")
    func jsonReason() async throws {
        let result = try await CLITests().run(["run", "--json", "--timeout", "1s", "-e", "setInterval(() => {}, 1000)"])
        #expect(result.status == 124)
        #expect(result.stderr.isEmpty)
        let last = try #require(result.stdout.split(separator: "\n").last)
        let event = try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
        #expect(event["reason"] as? String == "timed-out")
        #expect(event["message"] as? String == "guest killed: timed out after 1s")
    }

    @Test("output past 64 MiB is cut and a line says so")
    func truncationReason() async throws {
        let result = try await CLITests().run([
            "run", "-e", "process.stdout.write(Buffer.alloc(65 << 20, 97), () => process.exit(0))",
        ])
        #expect(result.status == 0)
        #expect(result.stdout.utf8.count == 64 << 20)
        #expect(result.stderr == """
            secure-exec: guest output truncated: stdout passed 64 MiB
            secure-exec: guest exited with code 0

            """)
    }

    @Test("a guest that exits by itself adds nothing to its stderr")
    func plainExitIsQuiet() async throws {
        let result = try await CLITests().run(["run", "-e", "console.error('only this'); process.exit(5)"])
        #expect(result.status == 5)
        #expect(result.stderr == "only this\n")
    }

    // MARK: - Input that needs no sandbox

    /// With `--json`, anything started would print a "spawned" event first:
    /// an empty stdout shows validation refused the command before that.
    @Test("out-of-range and malformed input: one clear message, exit 64, nothing started, no trap", arguments: [
        (["run", "--json", "--memory", "99999999999G", "-e", "1"], "--memory must be between 16 MiB and 1 TiB"),
        (["run", "--json", "--memory", "99999999999999999999", "-e", "1"], "--memory must be between"),
        (["run", "--json", "--memory", "8M", "-e", "1"], "--memory must be between"),
        (["run", "--json", "--memory", "1.5G", "-e", "1"], "--memory expects a size"),
        (["run", "--json", "--cpu", "9999999999999h", "-e", "1"], "--cpu must be between 1s and 365d"),
        (["run", "--json", "--timeout", "9999999999999h", "-e", "1"], "--timeout must be between 1ms and 365d"),
        (["run", "--json", "--timeout", "99999999999999999999999d", "-e", "1"], "--timeout must be between"),
        (["run", "--json", "--timeout=-5s", "-e", "1"], "--timeout expects a duration"),
        (["run", "--json", "--pids", "99999999999999999999", "-e", "1"], "--pids must be between 16 and 4194304"),
        (["run", "--json", "--pids", "lots", "-e", "1"], "--pids expects a whole number"),
        (["run", "--json", "--grace", "9999999999999h", "-e", "1"], "--grace must be between 0s and 1h"),
        (["serve", "--json", "/dev/null", "--port", "3000", "--ready-timeout", "9999999999999h"],
         "--ready-timeout must be between"),
        (["run", "--json", "--project-mode", "copy", "-e", "1"], "--project-mode expects overlay or rw"),
        (["run", "--json", "--env", "=value", "-e", "1"], "--env expects K=V"),
        (["serve", "--json", "/dev/null", "--port", "3000", "--expose", "example.com:8080"], "is not an IP address"),
        (["serve", "--json", "/dev/null", "--port", "3000", "--expose", "no-such-host.invalid:0"], "is not an IP address"),
        (["serve", "--json", "/dev/null", "--port", "3000", "--expose", "0.0.0.0:8080"], "not a loopback address"),
        (["serve", "--json", "/dev/null", "--port", "3000", "--expose", "[::]:8080"], "not a loopback address"),
        (["serve", "--json", "/dev/null", "--port", "3000", "--expose", "[::1]:99999999999999999999"], "--expose expects"),
    ])
    func refusedInput(_ arguments: [String], _ message: String) async throws {
        let result = try await CLITests().run(arguments)
        #expect(result.status == 64, "stderr: \(result.stderr)")
        #expect(result.stderr.contains(message), "stderr: \(result.stderr)")
        #expect(!result.stderr.contains("Fatal error"), "no Swift trap")
        #expect(result.stdout.isEmpty, "nothing started")
    }

    /// The guest's arguments and environment reach the sandbox in one 64 KiB
    /// message; more is refused before anything starts.
    @Test("an environment or arguments too large for the spawn request: exit 64, nothing started")
    func oversizedSpawnRequest() async throws {
        let big = String(repeating: "x", count: 61 << 10)
        for arguments in [
            ["run", "--json", "--env", "BIG=" + big, "-e", "1"],
            ["run", "--json", "--env", "A=" + String(big.prefix(30 << 10)), "-e", "1", "--", String(big.prefix(31 << 10))],
            ["run", "--json", "-e", "1", "--"] + Array(repeating: String(repeating: "y", count: 1000), count: 64),
        ] {
            let result = try await CLITests().run(arguments)
            #expect(result.status == 64)
            #expect(result.stderr.contains("together they must stay under 60 KiB"), "stderr: \(result.stderr.prefix(500))")
            #expect(result.stdout.isEmpty, "nothing started")
        }
        // Just under the bound still runs.
        let fits = try await CLITests().run(["run", "--env", "BIG=" + String(big.prefix(50 << 10)), "-e",
                                             "process.exit(process.env.BIG.length === 50 * 1024 ? 0 : 1)"])
        #expect(fits.status == 0, "stderr: \(fits.stderr)")
    }

    // MARK: - gc

    @Test("gc: exit 0, one line per removal or \"nothing to reclaim\"; --json is {\"removed\": [...]}")
    func gcOutput() async throws {
        let text = try await CLITests().run(["gc"])
        #expect(text.status == 0, "stderr: \(text.stderr)")
        let lines = text.stdout.split(separator: "\n").map(String.init)
        #expect(lines == ["nothing to reclaim"] || (!lines.isEmpty && lines.allSatisfy { $0.hasPrefix("removed ") }),
                "stdout: \(text.stdout)")
        let json = try await CLITests().run(["gc", "--json"])
        #expect(json.status == 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["removed"] is [String])
    }

    /// Any CLI reclaims leftovers once before its first sandbox, so a test
    /// running beside this one may remove them first: what must hold is that
    /// they go, and that what gc prints about them names the dead supervisor.
    @Test("gc removes the cgroups of a SIGKILLed serve")
    func gcAfterKill() async throws {
        try await withStubbornServer { server in
            let program = try HostProgram(Self.cli, arguments: ["serve", server, "--port", "3000"])
            defer {
                program.stop()
                HostCensus.removeCgroups(ofSupervisors: [program.pid])  // only if the test failed before gc
            }
            try await program.stderr.waitUntilContains("ready", timeout: .seconds(30))
            #expect(!HostCensus.sandboxCgroups(ofSupervisors: [program.pid]).isEmpty, "serve made its cgroups")
            kill(program.pid, SIGKILL)
            try await program.waitForExit(includingOutput: false, timeout: .seconds(10))
            var printed: [String] = []
            let deadline = ContinuousClock.now.advanced(by: .seconds(10))
            while !HostCensus.sandboxCgroups(ofSupervisors: [program.pid]).isEmpty, ContinuousClock.now < deadline {
                // The kernel may still be emptying the cgroups: gc leaves those for its next call.
                let result = try await CLITests().run(["gc"])
                #expect(result.status == 0)
                printed += result.stdout.split(separator: "\n").map(String.init).filter { $0.contains("secure-exec-\(program.pid)-") }
                try await Task.sleep(for: .milliseconds(50))
            }
            let gone = HostCensus.sandboxCgroups(ofSupervisors: [program.pid]).isEmpty
            #expect(gone, "left: \(HostCensus.sandboxCgroups(ofSupervisors: [program.pid]))")
            #expect(printed.allSatisfy { $0.hasPrefix("removed cgroup ") && $0.hasSuffix("(supervisor \(program.pid) is gone)") },
                    "\(printed)")
        }
    }
}
