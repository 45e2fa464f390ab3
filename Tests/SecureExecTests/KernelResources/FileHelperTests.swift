import Foundation
import SecureExec
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The host's file operations (`readFile`, `writeFile`, ...) run in a child
/// of the sandbox's init that touches files with the guest's fsuid but keeps
/// the namespace root's real uid, so a guest (uid 1000) can neither SIGSTOP
/// nor kill it and cannot stall the host. An operation that hangs anyway
/// fails with `.timeout` after `Limits(fileOperationTimeout:)`.
@Suite("Kernel resources: the file helper is out of the guest's reach", .needsRoot, .timeLimit(.minutes(2)))
struct FileHelperTests {
    /// Scans /proc without pause and sends SIGSTOP to every process but itself
    /// and init; prints `seen <pid> <result>` the first time it meets a pid
    /// (and `seen <pid> stopped` if a later try succeeds), where result is
    /// "stopped" or the error code (EPERM, ESRCH).
    static let stopper = """
        const fs = require("fs");
        const self = process.pid;
        const seen = new Map();
        const sweep = () => {
          let names;
          try { names = fs.readdirSync("/proc"); } catch { return; }
          for (const name of names) {
            if (!/^[0-9]+$/.test(name)) continue;
            const pid = Number(name);
            if (pid === self || pid === 1) continue;
            let result;
            try { process.kill(pid, "SIGSTOP"); result = "stopped"; } catch (e) { result = e.code; }
            const before = seen.get(pid);
            if (before === undefined || (result === "stopped" && before !== "stopped")) {
              seen.set(pid, result);
              console.log("seen " + pid + " " + result);
            }
          }
        };
        setInterval(() => { for (let i = 0; i < 50; i++) sweep(); }, 1);
        console.log("sweeping");
        """

    @Test("a guest SIGSTOPping every process it can see cannot stall readFile or writeFile")
    func helperCannotBeStopped() async throws {
        // A stopped helper would hang an operation until this timeout; each must finish well before.
        let limits = Limits(fileOperationTimeout: .seconds(40))
        let deadline: Duration = .seconds(10)
        try await withRuntime(limits: limits) { runtime in
            let guest = try await runtime.startGuest(Self.stopper)
            try await guest.stdout.waitUntilContains("sweeping")
            let payload = (0..<(256 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            var completed = 0
            for index in 0..<150 {
                let path = "/workspace/file-\(index % 8)"
                let result = Mutex<String?>(nil)
                let finished = await finishes(within: deadline) {
                    do {
                        try await runtime.writeFile(path, payload)
                        let back = try await runtime.readFile(path)
                        let listing = try await runtime.readDirectory("/workspace")
                        result.withLock {
                            $0 = back == payload && listing.contains { $0.name == "file-\(index % 8)" } ? "ok" : "wrong contents"
                        }
                    } catch {
                        result.withLock { $0 = "\(error)" }
                    }
                }
                guard finished else {
                    Issue.record("file operations \(index) did not return within \(deadline); the guest saw: \(guest.stdout.lines.suffix(10))")
                    break
                }
                let outcome = result.withLock { $0 } ?? "no result"
                guard outcome == "ok" else {
                    Issue.record("file operations \(index): \(outcome)")
                    break
                }
                completed += 1
            }
            #expect(completed == 150)
            let early = guest.process.termination
            #expect(early == nil, "the stopper ended early (\(String(describing: early))): \(guest.stderr.text.suffix(1000))")
            guest.process.kill(.kill)
            _ = try await guest.process.wait()

            let seen = guest.stdout.lines.filter { $0.hasPrefix("seen ") }
            let stopped = seen.filter { $0.hasSuffix(" stopped") }
            #expect(stopped.isEmpty, "the guest stopped the file helper: \(stopped.prefix(5))")
            // Control: the guest did meet helpers (the race was run, not missed;
            // it usually meets hundreds of the 450).
            #expect(seen.count >= 10, "the guest saw only \(seen.count) file helpers to signal: \(seen)")
        }
    }

    @Test("a fifo renamed into a writable area is refused at once, never read or written, and the runtime stays usable")
    func fifoRefused() async throws {
        // The host makes a fifo in a read-write mount (a guest cannot make one:
        // mknod is refused, but it could rename one it finds into place).
        // Opening it would block the helper; it is opened non-blocking and refused.
        // A read-write mount must not be root's: give it an owner of its own.
        try await withHostDirectory(owner: 4243, group: 4243) { directory in
            try #require(mkfifo(directory + "/fifo", 0o666) == 0, "mkfifo: errno \(errno)")
            try #require(chown(directory + "/fifo", 4243, 4243) == 0)

            // A long timeout: the refusal must come from the helper, not from the clock.
            let limits = Limits(fileOperationTimeout: .seconds(600))
            try await withRuntime(limits: limits, mounts: [Mount(host: directory, guest: "/data", readOnly: false)]) { runtime in
                for operation in ["read", "write"] {
                    let outcome = Mutex<SecureExecError?>(nil)
                    let finished = await finishes(within: .seconds(15)) {
                        do throws(SecureExecError) {
                            if operation == "read" {
                                _ = try await runtime.readFile("/data/fifo")
                            } else {
                                try await runtime.writeFile("/data/fifo", text: "into a fifo")
                            }
                        } catch {
                            outcome.withLock { $0 = error }
                        }
                    }
                    try #require(finished, "\(operation) of a fifo with no peer did not return within 15 s")
                    let error = try #require(outcome.withLock { $0 }, "\(operation) of a fifo succeeded")
                    #expect(error.code != .timeout, "\(error)")
                }
                // The runtime still works: nothing is stuck behind the refused ones.
                try await runtime.writeFile("/data/plain", text: "after the fifo")
                #expect(try await runtime.readTextFile("/data/plain") == "after the fifo")
            }
        }
    }

    @Test("a file operation that stalls fails with .timeout after fileOperationTimeout, and the runtime stays usable")
    func stalledOperationTimesOut() async throws {
        // An upload whose source stops producing: the operation may not wait
        // for it past its timeout.
        let limits = Limits(fileOperationTimeout: .seconds(1))
        try await withRuntime(limits: limits) { runtime in
            let started = ContinuousClock.now
            let chunks = AsyncStream<[UInt8]> { continuation in
                continuation.yield(Array("first chunk".utf8))
                Task {
                    try? await Task.sleep(for: .seconds(3))
                    continuation.yield(Array("too late".utf8))
                    continuation.finish()
                }
            }
            let outcome = Mutex<SecureExecError?>(nil)
            let finished = await finishes(within: .seconds(15)) {
                do throws(SecureExecError) {
                    try await runtime.writeFile("/workspace/slow.txt", contentsOf: chunks)
                } catch {
                    outcome.withLock { $0 = error }
                }
            }
            try #require(finished, "a stalled upload did not return within 15 s (timeout 1 s)")
            let error = try #require(outcome.withLock { $0 }, "the stalled upload succeeded")
            #expect(error.code == .timeout, "\(error)")
            #expect(ContinuousClock.now - started >= .milliseconds(900), "it failed before its timeout")
            try await runtime.writeFile("/workspace/x", text: "x")
            #expect(try await runtime.readTextFile("/workspace/x") == "x")
        }
    }
}
