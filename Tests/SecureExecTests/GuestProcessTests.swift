import Foundation
import SecureExec
import TestSupport
import Testing

/// A guest process handle tells the truth about its process (README,
/// "The API"): signals end it and are reported as such,
/// exit codes come back exactly, `dispose()` ends even a guest that ignores
/// SIGTERM, stdin reaches it, and nothing it wrote before exiting is lost.
@Suite("Guest process lifecycle", .needsRoot, .timeLimit(.minutes(1)))
struct GuestProcessTests {
    /// Keeps node alive until something ends it.
    static let runsForever = "setInterval(() => {}, 1000);"

    @Test("kill() sends SIGTERM and wait() reports it")
    func killThenWait() async throws {
        try await withRuntime { runtime in
            let guest = try await runtime.startGuest(Self.runsForever)
            guest.process.kill()
            let termination = try await guest.process.wait()
            #expect(termination == .signaled(.terminate))
            #expect(guest.process.termination == .signaled(.terminate))
            #expect(guest.process.exitCode == nil)
        }
    }

    @Test("kill(signal) ends the guest with that signal", arguments: [Signal.kill, .interrupt, .hangup, .user2])
    func killWithSignal(signal: Signal) async throws {
        try await withRuntime { runtime in
            let guest = try await runtime.startGuest(Self.runsForever)
            guest.process.kill(signal)
            #expect(try await guest.process.wait() == .signaled(signal))
        }
    }

    @Test("termination and exitCode are nil while the guest runs")
    func runningHasNoExit() async throws {
        try await withRuntime { runtime in
            let guest = try await runtime.startGuest(Self.runsForever + "console.log('running');")
            try await guest.stdout.waitUntilContains("running")
            #expect(guest.process.termination == nil)
            #expect(guest.process.exitCode == nil)
            #expect(guest.process.pid > 1, "pid 1 is the sandbox's init")
        }
    }

    @Test("process.exit(3) is reported as exited(3)")
    func exitCode() async throws {
        try await withRuntime { runtime in
            let guest = try await runtime.startGuest("process.exit(3);")
            #expect(try await guest.process.wait() == .exited(3))
            #expect(guest.process.exitCode == 3)
            #expect(guest.process.termination == .exited(3))
        }
    }

    @Test("dispose() ends a guest that ignores SIGTERM, with SIGKILL, within a few seconds")
    func disposeKillsStubbornGuest() async throws {
        // Not withRuntime: this test disposes itself, and must not hang if dispose does.
        let runtime = try await NodeRuntime.create()
        let guest: StartedGuest
        do {
            guest = try await runtime.startGuest(
                """
                process.on("SIGTERM", () => console.log("ignored SIGTERM"));
                setInterval(() => {}, 1000);
                console.log("armed");
                """)
            try await guest.stdout.waitUntilContains("armed")
        } catch {
            _ = await finishes(within: .seconds(15)) { await runtime.dispose() }
            throw error
        }

        let clock = ContinuousClock()
        let started = clock.now
        let disposal = Task { await runtime.dispose() }
        let disposedInTime = await finishes(within: .seconds(5)) { await disposal.value }
        let took = clock.now - started
        if !disposedInTime {
            // Clean up what dispose() left running: SIGKILL the guest, then dispose can finish.
            guest.process.kill(.kill)
            await disposal.value
        }

        #expect(disposedInTime, "dispose() had not returned 5 s after it was called")
        #expect(try await guest.process.wait() == .signaled(.kill))
        #expect(took >= runtime.limits.terminationGrace, "dispose did not give the guest its grace period: \(took)")
        #expect(guest.stdout.lines == ["armed", "ignored SIGTERM"])
    }

    @Test("dispose() ends every host process of the sandbox")
    func disposeLeavesNoProcess() async throws {
        let marker = UUID().uuidString
        let (guestPID, initPID) = try await withRuntime { runtime in
            let guest = try await runtime.startGuest(
                Self.runsForever + "console.log('up');", environment: ["SECURE_EXEC_TEST_MARKER": marker])
            try await guest.stdout.waitUntilContains("up")
            let hostGuest = try #require(
                HostCensus.processes().first { HostCensus.environment(of: $0.pid)?["SECURE_EXEC_TEST_MARKER"] == marker },
                "the guest's node is not visible on the host")
            #expect(hostGuest.isGuestNode, "\(hostGuest)")
            let hostInit = try #require(HostCensus.process(hostGuest.parent))
            #expect(hostInit.isSandboxInit, "the guest's parent is \(hostInit)")
            #expect(hostInit.parent == getpid())
            return (hostGuest.pid, hostInit.pid)
        }
        // withRuntime has disposed: the pids must be gone (not even a zombie).
        #expect(HostCensus.process(guestPID) == nil, "\(HostCensus.process(guestPID).map(String.init(describing:)) ?? "")")
        #expect(HostCensus.process(initPID) == nil, "\(HostCensus.process(initPID).map(String.init(describing:)) ?? "")")
    }

    @Test("4 MiB written just before process.exit arrives whole and in order")
    func outputBeforeExitIsDelivered() async throws {
        let size = 4 << 20
        let expected = (0..<size).map { UInt8($0 % 251) }
        let guest = try await withRuntime { runtime in
            try await runtime.runGuest(
                """
                const bytes = Buffer.alloc(\(size)).map((_, i) => i % 251);
                process.stdout.write(bytes, () => process.exit(0));
                """)
        }
        #expect(guest.termination == .exited(0))
        #expect(guest.stdoutBytes.count == size)
        #expect(firstDifference(guest.stdoutBytes, expected) == nil)
        #expect(guest.stderr == "")
    }

    @Test("stdin bytes reach the guest and closeStdin() gives it end-of-file")
    func stdinRoundTrip() async throws {
        try await withRuntime { runtime in
            let guest = try await runtime.startGuest(
                """
                let text = "";
                process.stdin.setEncoding("utf8");
                process.stdin.on("data", (chunk) => text += chunk);
                process.stdin.on("end", () => console.log(text.toUpperCase() + " <eof>"));
                """)
            try await guest.process.writeStdin("hello, ")
            try await guest.process.writeStdin(Array("sandbox".utf8))
            guest.process.closeStdin()
            let finished = try await guest.finish()
            #expect(finished.termination == .exited(0))
            #expect(finished.line == "HELLO, SANDBOX <eof>")
        }
    }
}
