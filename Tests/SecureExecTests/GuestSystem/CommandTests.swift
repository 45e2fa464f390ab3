import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `spawnCommand` runs a command line with the root's `/bin/sh -c`,
/// `execCommand` runs one to completion and `spawnExecutable` runs one
/// program without a shell, with the same process handle, output, limits and
/// terminations as `spawn`. The way dev servers start (`npm run dev`, `npx
/// <tool>`, package scripts) works offline in `.standard`; both calls need
/// the childProcess permission and say so; a root without a shell, a
/// missing program, a noexec one and a script whose interpreter is missing
/// each fail naming what is missing.
@Suite("Guest system: commands (npm run, npx, scripts)", .needsRoot, .timeLimit(.minutes(2)))
struct CommandTests {
    struct Page: Decodable, Equatable {
        var url: String
        var files: String
    }

    @Test("spawnCommand(\"npm run dev\") starts the project's dev server, reached by fetch and expose; its shell-outs work")
    func npmRunDev() async throws {
        try await withProjectRuntime { runtime in
            let output = GuestOutput()
            let server = try await runtime.spawnCommand(
                "npm run dev", onStdout: output.sink, onStderr: output.sink)
            try await runtime.waitForListener(port: GuestProject.port, timeout: .seconds(30), process: server)
            try await output.waitUntilContains("dev server ready")

            let page = try await runtime.fetch(GuestProject.port, path: "/hello")
            #expect(page.status == 200)
            let answer = try JSONDecoder().decode(Page.self, from: Data(page.body))
            #expect(answer == Page(url: "/hello", files: "\(GuestProject.topLevelCount)"), "\(output.text)")

            let exposed = try await runtime.expose(GuestProject.port)
            let client = try await HostSocket.connect(port: exposed.port)
            try await client.send("GET /through-expose HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            let response = String(decoding: try await client.receive(through: "through-expose\""), as: UTF8.self)
            #expect(response.hasPrefix("HTTP/1.1 200"), "\(response)")
            await exposed.close()

            // sh execs the line's last command, so npm gets the signal and passes it to the server.
            server.kill()
            let ending = try await server.wait()
            #expect(ending != .exited(0), "the dev server was ended, not finished: \(ending)")
            var left = ""
            for _ in 0..<100 {
                left = try await runtime.execCommand("ps -o args | grep -c '[n]ode server.js'").stdoutText
                if left == "0\n" { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(left == "0\n", "the dev server outlived its command")
        }
    }

    @Test("npm test's exit code is the command's, and its output streams through", arguments: [0, 3])
    func npmTestExitCode(code: Int32) async throws {
        try await withProjectRuntime { runtime in
            let result = try await runtime.execCommand("npm test", environment: ["TEST_EXIT": "\(code)"])
            #expect(result.termination == .exited(code), "\(result.summary)")
            #expect(result.stdoutText.contains("tests ran"), "\(result.summary)")
        }
    }

    @Test("npm run build runs a package script whose shell pipeline writes into the workspace")
    func npmRunBuild() async throws {
        try await withProjectRuntime { runtime in
            let result = try await runtime.execCommand("npm run build")
            #expect(result.termination == .exited(0), "\(result.summary)")
            // The script's `ls | wc -l` counts the project and the dist it made.
            #expect(result.stdoutText.hasSuffix("\(GuestProject.topLevelCount + 1)\n"), "\(result.summary)")
            #expect(try await runtime.readTextFile("/workspace/dist/out.txt") == "built\n")
        }
    }

    @Test("npx and package scripts run a node_modules/.bin tool through its #!/usr/bin/env node line, offline")
    func installedBin() async throws {
        try await withProjectRuntime(permissions: Permissions(childProcess: .allow)) { runtime in
            let npx = try await runtime.execCommand("npx hello-tool a b")
            #expect(npx.termination == .exited(0), "\(npx.summary)")
            #expect(npx.stdoutText == #"hello-tool ran with ["a","b"]"# + "\n", "\(npx.summary)")
            let script = try await runtime.execCommand("npm run --silent hello")
            #expect(script.stdoutText == #"hello-tool ran with ["from-script"]"# + "\n", "\(script.summary)")
        }
    }

    @Test("spawnExecutable runs /usr/bin/npx and a .bin tool without a shell, arguments as they are")
    func executables() async throws {
        try await withProjectRuntime(permissions: Permissions(childProcess: .allow)) { runtime in
            for (path, arguments) in [
                ("/usr/bin/npx", ["hello-tool", "two words", "$HOME"]),
                ("/workspace/node_modules/.bin/hello-tool", ["two words", "$HOME"]),
            ] {
                let output = GuestOutput()
                let process = try await runtime.spawnExecutable(path, arguments: arguments, onStdout: output.sink)
                #expect(try await process.wait() == .exited(0), "\(path)")
                #expect(output.text == #"hello-tool ran with ["two words","$HOME"]"# + "\n", "\(path)")
            }
        }
    }

    @Test("environment and workingDirectory reach the shell; guests get npm's defaults")
    func environmentAndDirectory() async throws {
        try await withRuntime(permissions: Permissions(childProcess: .allow)) { runtime in
            let result = try await runtime.execCommand(
                #"echo "$GREETING"; pwd; echo "$npm_config_cache $npm_config_update_notifier $HOME $PATH""#,
                environment: ["GREETING": "hi there"], workingDirectory: "/tmp")
            #expect(result.stdoutText == "hi there\n/tmp\n/tmp/.npm false /workspace /usr/bin:/bin\n", "\(result.summary)")
        }
    }

    @Test("commands get the same handle as spawn: output sequences, stdin, kill and timeout")
    func sameHandle() async throws {
        try await withRuntime(permissions: Permissions(childProcess: .allow)) { runtime in
            let streamed = try await runtime.spawnCommand("echo one; echo two >&2")
            var text = ""
            for await chunk in streamed.stdout { text += String(decoding: chunk, as: UTF8.self) }
            #expect(text == "one\n")
            #expect(try await streamed.wait() == .exited(0))

            let echoed = try await runtime.execCommand("tr a-z A-Z", stdin: Array("piped in".utf8))
            #expect(echoed.stdoutText == "PIPED IN", "\(echoed.summary)")

            let sleeper = try await runtime.spawnCommand("exec sleep 30")
            sleeper.kill()
            #expect(try await sleeper.wait() == .signaled(.terminate))

            let late = try await runtime.spawnCommand("sleep 30", timeout: .milliseconds(300))
            #expect(try await late.wait() == .timedOut)
            let timed = try await runtime.execCommand("sleep 30", timeout: .milliseconds(300))
            #expect(timed.termination == .timedOut)
        }
    }

    @Test("without the childProcess permission each call says so, and starts nothing")
    func permissionMissing() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let refusals: [(String, () async throws -> Any)] = [
                ("spawnCommand", { try await runtime.spawnCommand("echo hi") }),
                ("execCommand", { try await runtime.execCommand("echo hi") }),
                ("spawnExecutable", { try await runtime.spawnExecutable("/usr/bin/npx", arguments: ["--version"]) }),
            ]
            for (call, attempt) in refusals {
                let error = await expectError(.invalidArgument, mentioning: "childProcess", "\(call)") { try await attempt() }
                #expect(error?.message.contains(call) == true, "\(String(describing: error))")
            }
            let nothing = try await runtime.exec("console.log(require('fs').readdirSync('/proc').filter(n => /^[0-9]+$/.test(n)).length)")
            #expect(nothing.stdoutText == "2\n", "only init and this probe run: \(nothing.summary)")
        }
    }

    @Test("a program that does not exist fails with .spawnFailed naming it")
    func missingProgram() async throws {
        try await withRuntime(permissions: Permissions(childProcess: .allow)) { runtime in
            let error = await expectError(.spawnFailed, errno: ENOENT, mentioning: "/workspace/no-such-tool") {
                try await runtime.spawnExecutable("/workspace/no-such-tool")
            }
            #expect(error?.message.contains("does not exist") == true, "\(String(describing: error))")
            await expectError(.invalidArgument, mentioning: "path") { try await runtime.spawnExecutable("npx") }
            await expectError(.invalidArgument) { try await runtime.spawnCommand("") }
        }
    }

    @Test("a program on a noexec mount or without the x bit fails naming it")
    func notExecutable() async throws {
        try await withRuntime(permissions: Permissions(childProcess: .allow)) { runtime in
            try await runtime.writeFile("/tmp/tool.sh", text: "#!/bin/sh\necho ran\n")
            let made = try await runtime.execCommand("chmod 755 /tmp/tool.sh && echo ok")
            #expect(made.stdoutText == "ok\n", "\(made.summary)")
            let error = await expectError(.spawnFailed, errno: EACCES, mentioning: "/tmp/tool.sh") {
                try await runtime.spawnExecutable("/tmp/tool.sh")
            }
            #expect(error?.message.contains("noexec") == true, "\(String(describing: error))")
        }
    }

    @Test("a script whose interpreter the root lacks fails naming the interpreter")
    func missingInterpreter() async throws {
        try await withProjectRuntime(permissions: Permissions(childProcess: .allow)) { runtime in
            let error = await expectError(.spawnFailed, errno: ENOENT, mentioning: "/usr/bin/python3") {
                try await runtime.spawnExecutable("/workspace/scripts/tool.py")
            }
            #expect(error?.message.contains("/workspace/scripts/tool.py") == true, "\(String(describing: error))")
        }
    }

    @Test("the same project under .minimal fails clearly: the root has no shell")
    func minimalHasNoShell() async throws {
        try await withProjectRuntime(root: .minimal) { runtime in
            let error = await expectError(.spawnFailed, mentioning: "has no shell") {
                try await runtime.spawnCommand("npm run dev")
            }
            #expect(error?.message.contains(".minimal") == true, "\(String(describing: error))")
            let npx = await expectError(.spawnFailed, errno: ENOENT, mentioning: "/usr/bin/npx") {
                try await runtime.spawnExecutable("/usr/bin/npx", arguments: ["hello-tool"])
            }
            #expect(npx?.message.contains("does not exist") == true, "\(String(describing: npx))")
        }
    }
}
