import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The CLI's `--command` and `--root`: `run DIR --command 'npm test'` exits
/// with the command's code, `serve DIR --port N --command 'npm run dev'`
/// serves the dev server through `--expose`, `--root` picks the image, and
/// bad combinations are refused with exit 64 before anything starts.
@Suite("Guest system: the CLI's --command and --root", .needsRoot, .timeLimit(.minutes(2)))
struct CommandCLITests {
    static var cli: String { PackagePaths.product("secure-exec") }

    func run(_ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        let program = try HostProgram(Self.cli, arguments: arguments)
        defer { program.stop() }
        let (status, _) = try await program.waitForExit(timeout: .seconds(100))
        return (status, program.stdout.text, program.stderr.text)
    }

    @Test("run DIR --command 'npm test' exits with the script's code", arguments: [0, 3])
    func runCommand(code: Int) async throws {
        try await withGuestProject { project in
            let result = try await run(["run", project, "--env", "TEST_EXIT=\(code)", "--command", "npm test"])
            #expect(result.status == Int32(code), "stderr: \(result.stderr)")
            #expect(result.stdout.contains("tests ran"), "stdout: \(result.stdout)")
        }
    }

    @Test("run --command without a project runs in an empty workspace")
    func runCommandAlone() async throws {
        let result = try await run(["run", "--command", "pwd; ls | wc -l"])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout == "/workspace\n0\n")
    }

    @Test("--root minimal has no shell: the command is refused with a clear message, exit 69")
    func minimalRoot() async throws {
        try await withGuestProject { project in
            let result = try await run(["run", project, "--root", "minimal", "--command", "npm test"])
            #expect(result.status == 69, "stderr: \(result.stderr)")
            #expect(result.stderr.contains("has no shell"), "stderr: \(result.stderr)")
        }
    }

    @Test("--root host runs the host's tools")
    func hostRoot() async throws {
        let result = try await run(["run", "--root", "host", "--command", "test -x /usr/bin/perl -o -x /usr/bin/python3 && echo host"])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout == "host\n")
    }

    @Test("serve DIR --port 5173 --command 'npm run dev' --expose serves the dev server until SIGINT")
    func serveCommand() async throws {
        try await withGuestProject { project in
            let program = try HostProgram(
                Self.cli,
                arguments: ["serve", project, "--port", "5173", "--expose", "127.0.0.1:0", "--json", "--command", "npm run dev"])
            defer { program.stop() }
            try await program.stdout.waitUntilContains("\"exposed\"", timeout: .seconds(60))
            let events = program.stdout.lines.compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
            let exposed = try #require(events.first { $0["event"] as? String == "exposed" })
            let url = try #require(exposed["url"] as? String)
            let port = try #require(Int(url.split(separator: ":").last!.trimmingCharacters(in: CharacterSet(charactersIn: "/"))))
            let client = try await HostSocket.connect(port: port)
            try await client.send("GET /from-cli HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            let response = String(decoding: try await client.receive(through: "from-cli"), as: UTF8.self)
            #expect(response.hasPrefix("HTTP/1.1 200"), "\(response)")
            kill(program.pid, SIGINT)
            let (status, _) = try await program.waitForExit(timeout: .seconds(20))
            #expect(status == 0, "stderr: \(program.stderr.text)")
        }
    }

    @Test("bad --root and --command combinations: a clear message, exit 64, nothing started", arguments: [
        (["run", "--root", "nowhere-such", "--command", "true"], "--root expects"),
        (["run", "-e", "1", "--command", "true"], "not both"),
        (["run", "--command", "true", "--", "extra"], "with --command"),
        (["run", "--command", ""], "--command expects"),
    ])
    func badFlags(arguments: [String], message: String) async throws {
        let result = try await run(arguments + ["--json"])
        #expect(result.status == 64, "stderr: \(result.stderr)")
        #expect(result.stderr.contains(message), "stderr: \(result.stderr)")
        #expect(!result.stdout.contains("spawned"))
    }
}
