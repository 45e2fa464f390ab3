import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// inotify instances and watches are per-user kernel counts. Each sandbox's
/// user namespace is created by the sandbox's own unprivileged host uid, so
/// what its guests make is charged to that uid, never to root: two sandboxes
/// that each use up their inotify instances leave root (the host) able to
/// make its own. Inside, init sets the namespace's own limits
/// (/proc/sys/user/max_inotify_*) from `Limits`, and max_*_namespaces to 0.
@Suite("Kernel resources: inotify counts belong to the sandbox", .serialized, .needsRoot, .timeLimit(.minutes(4)))
struct InotifyAccountingTests {
    struct Report: Decodable {
        var attempts: Int
        var ok: Int
        var codes: [String: Int]
        var sysctl: [String: String]
    }

    /// Starts `argv[2]` workers (plus the main thread), each making an inotify
    /// instance of its own by watching a file (libuv makes one per event loop),
    /// then prints `RESULT <json>` with the counts and the namespace's
    /// /proc/sys/user limits, and keeps every instance open until killed.
    static let exhaustInstances = """
        const { Worker } = require("worker_threads");
        const fs = require("fs");
        const workers = Number(process.argv[2]);
        const sysctl = {};
        for (const name of fs.readdirSync("/proc/sys/user")) {
          try { sysctl[name] = fs.readFileSync("/proc/sys/user/" + name, "utf8").trim(); } catch (e) { sysctl[name] = "error " + e.code; }
        }
        fs.writeFileSync("/tmp/watched", "x");
        let ok = 0, done = 0;
        const codes = {};
        const count = (result) => {
          if (result === "ok") ok++; else codes[result] = (codes[result] || 0) + 1;
          if (++done === workers + 1) console.log("RESULT " + JSON.stringify({ attempts: done, ok, codes, sysctl }));
        };
        try { fs.watch("/tmp/watched", () => {}); count("ok"); } catch (e) { count(e.code || String(e)); }
        for (let i = 0; i < workers; i++) {
          const worker = new Worker(`
            const { parentPort } = require("worker_threads");
            try { require("fs").watch("/tmp/watched", () => {}); parentPort.postMessage("ok"); }
            catch (e) { parentPort.postMessage(e.code || String(e)); }
            `, { eval: true, resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1 } });
          let reported = false;
          worker.on("message", (message) => { reported = true; count(message); });
          worker.on("error", (error) => { if (!reported) { reported = true; count("worker-error " + (error.code || error.message)); } });
        }
        """

    /// Watches `argv[2]` files from one thread (one instance), then prints
    /// `RESULT <json>` with how many watches it got.
    static let exhaustWatches = """
        const fs = require("fs");
        const files = Number(process.argv[2]);
        let ok = 0;
        const codes = {};
        for (let i = 0; i < files; i++) {
          const path = "/tmp/watched-" + i;
          fs.writeFileSync(path, "x");
          try { fs.watch(path, () => {}); ok++; } catch (e) { codes[e.code] = (codes[e.code] || 0) + 1; }
        }
        const sysctl = { max_inotify_watches: fs.readFileSync("/proc/sys/user/max_inotify_watches", "utf8").trim() };
        console.log("RESULT " + JSON.stringify({ attempts: files, ok, codes, sysctl }));
        process.exit(0);
        """

    static func report(from guest: StartedGuest, timeout: Duration = .seconds(120)) async throws -> Report {
        do {
            try await guest.stdout.waitUntilContains("RESULT ", timeout: timeout)
            try await guest.stdout.waitUntilContains("}\n", timeout: .seconds(5))
        } catch {
            throw TestFailure("no RESULT from the guest: \(error); stderr: \(guest.stderr.text.suffix(2000))")
        }
        let line = try #require(guest.stdout.lines.first { $0.hasPrefix("RESULT ") })
        return try JSONDecoder().decode(Report.self, from: Data(line.dropFirst("RESULT ".count).utf8))
    }

    /// The host's per-user limit, which also applies to each sandbox's own uid.
    static var hostMaxUserInstances: Int { KernelProc.readNumber("/proc/sys/fs/inotify/max_user_instances") ?? 128 }

    @Test("two sandboxes that use up their inotify instances leave root's instances to the host")
    func exhaustedSandboxesLeaveRootAlone() async throws {
        let workers = 140
        let expected = min(128, Self.hostMaxUserInstances)
        let limits = Limits(memoryBytes: 2 << 30, maxProcesses: 4000)
        let before = KernelInotify.available()
        try #require(before.count > 0, "root cannot make an inotify instance even before the test (errno \(before.error))")

        try await withRuntime(limits: limits) { first in
            try await withRuntime(limits: limits) { second in
                let guests = [
                    try await first.startGuest(Self.exhaustInstances, arguments: ["\(workers)"]),
                    try await second.startGuest(Self.exhaustInstances, arguments: ["\(workers)"]),
                ]
                var reports: [Report] = []
                for guest in guests { reports.append(try await Self.report(from: guest)) }

                // While both guests hold every instance they could make, root can still make its own.
                let during = KernelInotify.available()
                for (index, report) in reports.enumerated() {
                    #expect(report.attempts == workers + 1)
                    #expect(report.ok == expected, "sandbox \(index + 1) made \(report.ok) instances, not its own \(expected): \(report)")
                    #expect(Set(report.codes.keys) == ["EMFILE"], "sandbox \(index + 1): \(report.codes)")
                    #expect(report.sysctl["max_inotify_instances"] == "128")
                    #expect(report.sysctl["max_inotify_watches"] == "131072")
                    for kind in ["user", "mnt", "net", "pid", "ipc", "uts", "cgroup", "time"] {
                        if let value = report.sysctl["max_\(kind)_namespaces"] {
                            #expect(value == "0", "sandbox \(index + 1): max_\(kind)_namespaces is \(value)")
                        }
                    }
                    #expect(report.sysctl["max_user_namespaces"] != nil, "the guest cannot read max_user_namespaces: \(report.sysctl)")
                }
                // Exactly equal on a quiet host; another root process on the
                // machine may open or close one or two meanwhile.
                #expect(
                    during.count > 0 && during.count >= before.count - 2,
                    "root could make \(before.count) inotify instances before the guests and \(during.count) (errno \(during.error)) while they held theirs"
                )
                for guest in guests { guest.process.kill(.kill) }
                for guest in guests { _ = try await guest.process.wait() }
            }
        }
    }

    @Test("a guest gets exactly its own Limits(inotifyInstances:) and sees them in /proc/sys/user")
    func ownInstanceLimit() async throws {
        try await withRuntime(limits: Limits(inotifyInstances: 7, inotifyWatches: 20)) { runtime in
            let guest = try await runtime.startGuest(Self.exhaustInstances, arguments: ["12"])
            let report = try await Self.report(from: guest)
            guest.process.kill(.kill)
            _ = try await guest.process.wait()
            #expect(report.sysctl["max_inotify_instances"] == "7")
            #expect(report.sysctl["max_inotify_watches"] == "20")
            #expect(report.attempts == 13)
            #expect(report.ok == 7, "\(report)")
            #expect(report.codes == ["EMFILE": 6], "\(report.codes)")
        }
    }

    @Test("a guest gets exactly its own Limits(inotifyWatches:)")
    func ownWatchLimit() async throws {
        try await withRuntime(limits: Limits(inotifyInstances: 7, inotifyWatches: 20)) { runtime in
            let guest = try await runtime.startGuest(Self.exhaustWatches, arguments: ["30"])
            let report = try await Self.report(from: guest, timeout: .seconds(30))
            _ = try await guest.process.wait()
            #expect(report.sysctl["max_inotify_watches"] == "20")
            #expect(report.ok == 20, "\(report)")
            #expect(report.codes == ["ENOSPC": 10], "\(report.codes)")
        }
    }
}
