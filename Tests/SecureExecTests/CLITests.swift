import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The `secure-exec` CLI, run as a real process the way operators and
/// scripts run it: exit codes, limits, serve with expose, check, bad flags.
@Suite("CLI", .needsRoot, .timeLimit(.minutes(2)))
struct CLITests {
    static var cli: String { PackagePaths.product("secure-exec") }

    /// Runs the CLI to completion (posix_spawn through HostProgram: Foundation's
    /// Process crashed when many ran at once); its pipes and its wait are read
    /// on threads of their own, never on the cooperative pool.
    func run(_ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        let program = try HostProgram(Self.cli, arguments: arguments)
        let (status, _) = try await program.waitForExit(timeout: .seconds(100))
        return (status, program.stdout.text, program.stderr.text)
    }

    @Test("run -e exits with the guest's code and streams its output")
    func runExitCode() async throws {
        let result = try await run(["run", "-e", "console.log('out'); console.error('err'); process.exit(3)"])
        #expect(result.status == 3)
        #expect(result.stdout == "out\n")
        #expect(result.stderr == "err\n")
    }

    @Test("a guest ended by the memory limit exits with the documented code 123")
    func memoryLimit() async throws {
        let result = try await run([
            "run", "--memory", "48M", "-e",
            "const keep = []; for (;;) keep.push(Buffer.alloc(1 << 20, 1));",
        ])
        #expect(result.status == 123, "stderr: \(result.stderr)")
    }

    @Test("a guest past --timeout exits 124, one past --cpu exits 122")
    func timeAndCPULimits() async throws {
        let timedOut = try await run(["run", "--timeout", "300ms", "-e", "setInterval(() => {}, 1000)"])
        #expect(timedOut.status == 124)
        let spun = try await run(["run", "--cpu", "1s", "-e", "for (;;) {}"])
        #expect(spun.status == 122)
    }

    @Test("serve --expose is reachable from the host, and SIGINT removes the sandbox")
    func serveExposeInterrupt() async throws {
        try await withHostDirectory { directory in
            let server = directory + "/server.js"
            try HostFiles.write(
                server,
                """
                require("node:http").createServer((req, res) => res.end("served " + req.url))
                  .listen(3000, "127.0.0.1");
                """)

            let program = try HostProgram(
                Self.cli, arguments: ["serve", server, "--port", "3000", "--expose", "127.0.0.1:0", "--json"])
            defer { program.stop() }
            try await program.stdout.waitUntilContains("\"exposed\"", timeout: .seconds(30))
            let events = program.stdout.lines.compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
            #expect(events.map { $0["event"] as? String } == ["spawned", "listening", "exposed"])
            let url = try #require(events.last?["url"] as? String)
            let port = try #require(Int(url.split(separator: ":").last!.trimmingCharacters(in: CharacterSet(charactersIn: "/"))))

            let client = try await HostSocket.connect(port: port)
            try await client.send("GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            let response = String(decoding: try await client.receive(through: "served /hello"), as: UTF8.self)
            #expect(response.hasPrefix("HTTP/1.1 200"))

            let sandbox = HostCensus.children(of: program.pid).filter(\.isSandboxInit)
            #expect(sandbox.count == 1, "serve runs exactly one sandbox")
            kill(program.pid, SIGINT)
            let (status, _) = try await program.waitForExit(timeout: .seconds(20))
            #expect(status == 0, "an operator's stop is a clean exit")
            #expect(program.stdout.lines.last?.contains("\"exited\"") == true)
            let gone = await poll(for: .seconds(5)) {
                sandbox.allSatisfy { HostCensus.process($0.pid) == nil }
            }
            #expect(gone, "no sandbox process survives the CLI")
        }
    }

    @Test("check passes on this machine and its JSON has the expected fields")
    func check() async throws {
        let result = try await run(["check", "--json"])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(report["ok"] as? Bool == true)
        let checks = try #require(report["checks"] as? [[String: Any]])
        let names = Set(checks.compactMap { $0["name"] as? String })
        #expect(names.isSuperset(of: ["root", "user namespaces", "seccomp", "pidfd", "kernel", "cgroup memory",
                                      "cgroup pids", "node", "sandbox", "egress"]))
        // This machine has nf_tables and IPv6: egress works here.
        #expect(checks.first { $0["name"] as? String == "egress" }?["ok"] as? Bool == true, "\(checks)")
        let node = try #require(report["node"] as? [String: Any])
        #expect((node["version"] as? String)?.hasPrefix("v") == true)
    }

    @Test("run FILE never follows a symlink on the host: a script that is a link to a secret is refused, unread")
    func scriptSymlinkRefused() async throws {
        try await withHostDirectory { directory in
            let secret = directory + "/secret.txt"
            try HostFiles.write(secret, "SECRET_TOKEN=abc123\n", mode: 0o600)
            try HostFiles.symlink(directory + "/main.js", to: secret)
            let result = try await run(["run", "--json", directory + "/main.js"])
            #expect(result.status == 64, "stderr: \(result.stderr)")
            #expect(result.stderr.contains("symlink"), "stderr: \(result.stderr)")
            #expect(!result.stdout.contains("spawned"))
            #expect(!(result.stdout + result.stderr).contains("abc123"))
        }
    }

    /// With `--json`, anything started would print a "spawned" event first;
    /// an empty stdout shows validation refused the command before that.
    @Test("bad flags: a clear message, exit 64, nothing started", arguments: [
        (["run", "--json", "--memory", "lots", "-e", "1"], "--memory expects a size"),
        (["run", "--json", "--mount", "/no/such/path:/mnt/x", "-e", "1"], "does not exist"),
        (["run", "--json", "/no/such/file.js"], "does not exist"),
        (["serve", "--json", "/no/such/file.js", "--port", "3000"], "does not exist"),
        (["run", "--json", "--timeout", "soon", "-e", "1"], "--timeout expects a duration"),
    ])
    func badFlags(_ arguments: [String], _ message: String) async throws {
        let result = try await run(arguments)
        #expect(result.status == 64)
        #expect(result.stderr.contains(message), "stderr: \(result.stderr)")
        #expect(!result.stderr.contains("Fatal error"), "no Swift trap")
        #expect(result.stdout.isEmpty)
    }
}
