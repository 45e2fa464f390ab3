import SecureExec
import TestSupport
import Testing

/// Network is denied unless asked for (README, "Security model":
/// network permission), and a denied guest fails with a clear error rather
/// than a hang: the dev server's `listen` errors with EPERM, and
/// `waitForListener` reports the exit and its stderr at once instead of
/// waiting out its timeout.
@Suite("Network denied by default", .needsRoot, .timeLimit(.minutes(1)))
struct NetworkPermissionTests {
    @Test("the seed dev server cannot listen and waitForListener reports its exit and stderr")
    func devServerDenied() async throws {
        try await withRuntime { runtime in
            #expect(runtime.permissions.network == .deny)
            let server = try await runtime.startGuest(GuestPrograms.devServer)

            let error = await #expect(throws: SecureExecError.self) {
                try await runtime.waitForListener(port: 3000, process: server.process)
            }

            let finished = try await server.finish()
            #expect(error?.code == .processExited)
            #expect(finished.termination == .exited(1))
            #expect(finished.stdout == "")
            #expect(finished.stderr.contains("Error: listen EPERM: operation not permitted 127.0.0.1:3000"))
            #expect(error?.message.contains("listen EPERM: operation not permitted 127.0.0.1:3000") == true,
                    "the error does not carry the stderr tail: \(String(describing: error))")
        }
    }

    @Test("waitForListener without a process watches the last guest and reports its exit")
    func devServerDeniedUnwatched() async throws {
        try await withRuntime { runtime in
            let server = try await runtime.startGuest(GuestPrograms.devServer)

            let error = await #expect(throws: SecureExecError.self) {
                try await runtime.waitForListener(port: 3000)
            }

            #expect(error?.code == .processExited)
            #expect(try await server.finish().termination == .exited(1))
        }
    }

    @Test("a denied guest cannot make even a loopback client socket")
    func clientDenied() async throws {
        let client = try await withRuntime { runtime in
            try await runtime.runGuest(GuestPrograms.tcpConnect(host: "127.0.0.1", port: 3000))
        }
        #expect(client.termination == .exited(0))
        #expect(client.line == "error EPERM")
    }
}
