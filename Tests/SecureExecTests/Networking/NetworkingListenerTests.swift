import SecureExec
import TestSupport
import Testing

/// `waitForListener` and `findListener` read the kernel's socket table: the
/// guest never sees a probe connection, an exit before listening fails at
/// once with the guest's stderr, and nothing listening times out.
@Suite("Networking: waiting for listeners", .needsRoot, .timeLimit(.minutes(2)))
struct NetworkingListenerTests {
    @Test("waitForListener makes no connection to the guest")
    func noProbeConnection() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            // Listening late, so waitForListener has polled for a while before it succeeds.
            let guest = try await runtime.startGuest(NetworkingGuests.httpServer(listenAfter: 300))
            try await runtime.waitForListener(port: 3000, timeout: .seconds(10), process: guest.process)
            try await guest.stdout.waitUntilContains("listening 3000")

            // The guest counts connections as it accepts them; this fetch's own is the first unless a probe came before.
            let connections = try await runtime.fetch(3000, path: "/connections")
            #expect(connections.bodyText == "1", "the guest had accepted \(connections.bodyText) connections")
        }
    }

    @Test("waitForListener fails with .processExited and the guest's stderr when it exits first")
    func guestExitsFirst() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let guest = try await runtime.startGuest(
                """
                setTimeout(() => {
                  process.stderr.write("fatal: config file missing\\n");
                  process.exit(1);
                }, 200);
                """)
            // Not .listenerTimeout: the exit ends the wait, not its 20 s timeout.
            let error = await #expect(throws: SecureExecError.self) {
                try await runtime.waitForListener(port: 3000, timeout: .seconds(20), process: guest.process)
            }

            #expect(error?.code == .processExited)
            #expect(error?.message.contains("fatal: config file missing") == true, "\(String(describing: error))")
            #expect(try await guest.process.wait() == .exited(1))
        }
    }

    @Test("waitForListener times out with .listenerTimeout when the guest never listens")
    func neverListens() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let guest = try await runtime.startGuest("setInterval(() => {}, 1000);")
            let clock = ContinuousClock()
            let started = clock.now
            let error = await #expect(throws: SecureExecError.self) {
                try await runtime.waitForListener(port: 3000, timeout: .milliseconds(300), process: guest.process)
            }
            let elapsed = clock.now - started

            #expect(error?.code == .listenerTimeout, "\(String(describing: error))")
            #expect(elapsed >= .milliseconds(300), "gave up after \(milliseconds(elapsed)) ms")
            #expect(elapsed < .seconds(3), "gave up after \(milliseconds(elapsed)) ms")
            #expect(guest.process.termination == nil, "the guest should still be running")
        }
    }

    @Test("findListener is false before the guest listens, true while it does, false after it closes")
    func findListener() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            // Listens when told "listen" on stdin, closes when told "close".
            let guest = try await runtime.startGuest(
                """
                const server = require("http").createServer((req, res) => res.end("ok"));
                process.stdin.setEncoding("utf8");
                process.stdin.on("data", (command) => {
                  if (command.includes("listen")) server.listen(3000, "127.0.0.1", () => console.log("listening"));
                  if (command.includes("close")) server.close(() => { console.log("closed"); process.stdin.destroy(); });
                });
                console.log("ready");
                """)
            try await guest.stdout.waitUntilContains("ready")
            #expect(try !runtime.findListener(port: 3000))

            try await guest.process.writeStdin("listen\n")
            try await guest.stdout.waitUntilContains("listening")
            #expect(try runtime.findListener(port: 3000))
            #expect(try runtime.findListener(port: 3000, host: .ipv4Loopback))
            #expect(try !runtime.findListener(port: 3001))

            try await guest.process.writeStdin("close\n")
            try await guest.stdout.waitUntilContains("closed")
            #expect(try !runtime.findListener(port: 3000))
        }
    }
}
