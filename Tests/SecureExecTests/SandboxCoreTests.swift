import Foundation
import SecureExec
import Synchronization
import TestSupport
import Testing

/// The seed scenario everything is measured against (README, "Two
/// commands"): a user's `node:http` dev server boots in a sandbox, prints its
/// line, and the host reaches `/health` and `/` through the kernel; the
/// example program prints exactly the six lines the design promises.
@Suite("Dev server scenario", .needsRoot, .timeLimit(.minutes(1)))
struct DevServerScenarioTests {
    @Test("the seed dev server prints its line and answers /health and / through the kernel")
    func seedDevServerAnswers() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let server = try await runtime.startGuest(GuestPrograms.devServer)
            try await runtime.waitForListener(port: 3000, process: server.process)

            let health = try await runtime.fetch(3000, path: "/health")
            #expect(health.status == 200)
            #expect(health.header("content-type") == "application/json")
            #expect(health.bodyText == #"{"ok":true}"#)

            let root = try await runtime.fetch(3000, path: "/")
            #expect(root.status == 200)
            #expect(root.header("content-type") == "text/plain")
            #expect(root.bodyText == "hello from the sandboxed dev server")

            server.process.kill()
            let finished = try await server.finish()
            #expect(finished.termination == .signaled(.terminate))
            #expect(finished.stdout == "server listening on 127.0.0.1:3000\n")
            #expect(finished.stderr == "")
        }
    }

    @Test("the dev-server example program prints the six lines the README shows")
    func exampleProgramOutput() async throws {
        let example = PackagePaths.product("dev-server-example")
        try #require(
            FileManager.default.isExecutableFile(atPath: example),
            "build it first: swift build --build-tests (looked for \(example))")
        let program = try HostProgram(example)
        defer { program.stop() }

        let exit = try await program.waitForExit(timeout: .seconds(30))

        #expect(exit.reason == .exit)
        #expect(exit.status == 0, "stderr: \(program.stderr.text)")
        let lines = program.stdout.lines
        try #require(lines.count == 6, "stdout was \(program.stdout.text.debugDescription)")
        #expect(lines[0].wholeMatch(of: /spawned guest server, pid: [0-9]+/) != nil, "first line: \(lines[0])")
        #expect(
            Array(lines[1...]) == [
                "server listening on 127.0.0.1:3000",
                #"health check -> 200 "{\"ok\":true}""#,
                #"GET / -> 200 "hello from the sandboxed dev server""#,
                #"RESULT {"status":200,"body":"hello from the sandboxed dev server"}"#,
                "server stopped",
            ])
        #expect(program.stderr.text == "")
    }
}

/// A runtime's lifetime is bounded the way the design promises: the scoped
/// `withNodeRuntime` disposes even when its body throws (Swift has no async
/// `finally`), `dispose()` may be called more than once and from several
/// tasks, and a disposed runtime refuses new work with `.disposed`.
@Suite("Runtime lifetime", .needsRoot, .timeLimit(.minutes(1)))
struct RuntimeLifetimeTests {
    struct BodyFailed: Error {}

    /// Hands a runtime and its guest out of a `withNodeRuntime` body.
    final class Escaped: Sendable {
        let value = Mutex<(NodeRuntime, GuestProcess)?>(nil)
    }

    @Test("withNodeRuntime disposes the runtime and ends its guests when the body throws")
    func scopedFormDisposesOnThrow() async throws {
        let escaped = Escaped()
        await #expect(throws: BodyFailed.self) {
            try await withNodeRuntime { runtime in
                let guest = try await runtime.spawn("setInterval(() => {}, 1000);")
                escaped.value.withLock { $0 = (runtime, guest) }
                throw BodyFailed()
            }
        }
        let (runtime, guest) = try #require(escaped.value.withLock { $0 })
        #expect(guest.termination == .signaled(.terminate))
        let error = await #expect(throws: SecureExecError.self) { try await runtime.spawn("console.log(1)") }
        #expect(error?.code == .disposed)
    }

    @Test("dispose() called twice and from two tasks at once returns every time")
    func disposeIsIdempotent() async throws {
        let runtime = try await NodeRuntime.create()
        let guest = try await runtime.spawn("setInterval(() => {}, 1000);")
        let disposedTogether = await finishes(within: .seconds(15)) {
            async let first: Void = runtime.dispose()
            async let second: Void = runtime.dispose()
            _ = await (first, second)
        }
        #expect(disposedTogether)
        #expect(await finishes(within: .seconds(5)) { await runtime.dispose() })
        #expect(try await guest.wait() == .signaled(.terminate))
        let fetchError = await #expect(throws: SecureExecError.self) { try await runtime.fetch(3000) }
        #expect(fetchError?.code == .disposed)
    }
}
