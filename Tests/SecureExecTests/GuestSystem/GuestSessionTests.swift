import SecureExec
import TestSupport
import Testing

/// Sessions and process groups work as on Linux (seccomp allows `setsid`;
/// the sandbox's pid namespace bounds them): `detached: true` gives a child
/// a session and a process group of its own, so a signal it sends to its
/// group stays there.
@Suite("Guest system: sessions and process groups", .needsRoot, .timeLimit(.minutes(2)))
struct GuestSessionTests {
    static let permissions = Permissions(childProcess: .allow)

    /// `stat(pid)`: a process's group and session, fields 5 and 6 of /proc/<pid>/stat.
    static let statHelper = """
        const fs = require("fs");
        const stat = (pid) => {
          const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
          const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
          return { pid, pgrp: Number(fields[2]), session: Number(fields[3]) };
        };
        """

    struct Process: Decodable, Equatable {
        let pid: Int
        let pgrp: Int
        let session: Int
    }

    @Test("a detached child leads a session and a process group of its own")
    func detachedChildHasOwnSession() async throws {
        let guest = try await withRuntime(permissions: Self.permissions) { runtime in
            try await runtime.runGuest(
                Self.statHelper + """
                    const { spawn } = require("child_process");
                    const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 10000)"], { detached: true, stdio: "ignore" });
                    // Its exec has happened once node runs in it: /proc shows node's command line.
                    const started = () => fs.readFileSync(`/proc/${child.pid}/cmdline`, "utf8").includes("setTimeout");
                    const report = () => {
                      if (!started()) return setTimeout(report, 10);
                      console.log(JSON.stringify({ parent: stat(process.pid), child: stat(child.pid) }));
                      child.kill();
                    };
                    report();
                    """)
        }
        struct Report: Decodable {
            let parent: Process
            let child: Process
        }
        try #require(guest.termination == .exited(0), "\(guest)")
        let report = try guest.json(Report.self)
        #expect(report.child.session == report.child.pid, "\(report)")
        #expect(report.child.pgrp == report.child.pid, "\(report)")
        #expect(report.child.session != report.parent.session, "\(report)")
    }

    @Test("a detached child's process.kill(0, 'SIGTERM') ends its own group and leaves its parent running")
    func groupSignalStaysInGroup() async throws {
        let guest = try await withRuntime(permissions: Self.permissions) { runtime in
            try await runtime.runGuest(
                """
                const { spawn } = require("child_process");
                const child = spawn(process.execPath, ["-e", "process.kill(0, 'SIGTERM'); setTimeout(() => {}, 10000)"], { detached: true, stdio: "inherit" });
                child.on("exit", (code, signal) => {
                  // A moment more, so a SIGTERM that reached us too would have ended us by now.
                  setTimeout(() => console.log(`child ended by ${signal}; parent running`), 200);
                });
                """)
        }
        #expect(guest.termination == .exited(0), "\(guest)")
        #expect(guest.line == "child ended by SIGTERM; parent running", "\(guest)")
    }
}
