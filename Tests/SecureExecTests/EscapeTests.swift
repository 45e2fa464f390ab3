import Foundation
import SecureExec
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

// The escape suites: what an untrusted guest tries, and must fail at, to reach
// the host or to outgrow its limits. A probe that gets through is a finding:
// the test fails and says what got through.

// MARK: - Native probes

/// Each probe of `Tests/Probes/probe.c` makes one escape attempt with raw
/// system calls from inside a sandbox (started by node through child_process,
/// from a read-only mount) and must report `BLOCKED`.
@Suite("Escape: native probes from inside the sandbox", .needsRoot, .timeLimit(.minutes(3)))
struct EscapeNativeProbeTests {
    /// Every probe in the binary, in its order.
    static let probes = [
        "mount_tmpfs", "mount_cgroup2", "mount_cgroup1", "mount_bind_remount", "umount2", "fsopen", "open_tree",
        "unshare_user", "unshare_mnt", "unshare_net", "unshare_pid", "unshare_ipc", "unshare_uts", "unshare_cgroup",
        "unshare_time", "setns_net", "pivot_root", "chroot", "clone_newuser", "clone_newns", "clone3",
        "ptrace_init", "ptrace_sibling", "ptrace_traceme", "process_vm_readv_init", "process_vm_readv_sibling",
        "kcmp", "pidfd_getfd", "proc1_mem", "proc1_exe_rdwr", "self_exe_rdwr", "parent_exe_rdwr", "kill_init",
        "pidfd_kill_init", "setsid_kill_outside", "setsid_tiocsti", "socket_raw", "socket_raw_inet6", "socket_packet", "netlink_audit", "netlink_uevent",
        "socket_families", "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "userfaultfd",
        "io_uring_setup", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
        "open_by_handle_at", "name_to_handle_at", "reboot", "swapon", "swapoff", "acct", "settimeofday",
        "clock_settime", "adjtimex", "syslog", "personality_bsd", "personality_0x0008", "personality_no_aslr",
        "ioctl_tiocsti", "ioctl_tiocsti_high_bits", "ioctl_tioclinux", "iopl", "ioperm", "modify_ldt", "mknod",
        "mkfifo", "fchmodat_setgid", "fchmodat2_setuid", "fchmod_high_bits", "create_setuid", "tmpfile_setuid",
        "openat2", "renameat2_whiteout", "fcntl_setlease", "fcntl_setlease_high_bits",
        "setuid", "setresuid", "setgid", "setgroups", "capset_raise", "rlimit_raise", "sethostname",
        "capabilities", "whoami", "proc_sys_hostname", "proc_sys_core_pattern", "sysrq_trigger", "kcore",
        "sys_census", "cgroup_view_write", "dev_census", "write_outside", "exec_tmp", "exec_workspace", "mmap_exec_tmp", "fd_census",
        "forkbomb", "int80", "x32",
    ]

    /// Probes aimed at another guest of the same uid, whose pid they take as argument.
    static let siblingProbes: Set<String> = ["ptrace_sibling", "process_vm_readv_sibling", "pidfd_getfd"]

    /// Probes aimed at a process outside the sandbox: this test process, whose host pid they take.
    static let hostPIDProbes: Set<String> = ["setsid_kill_outside"]

    @Test("the attempt is blocked", arguments: probes)
    func blocked(probe: String) async throws {
        let binary = try EscapeProbe.hostPath()
        let result = try await EscapeProbe.slots.withSlot {
            try await withRuntime(permissions: EscapeProbe.permissions, mounts: [EscapeProbe.mount(for: binary)]) {
                runtime in
                if Self.hostPIDProbes.contains(probe) {
                    return try await EscapeProbe.run(probe, arguments: ["\(getpid())"], hostBinary: binary, in: runtime)
                }
                guard Self.siblingProbes.contains(probe) else {
                    return try await EscapeProbe.run(probe, hostBinary: binary, in: runtime)
                }
                // Another node of the same uid in the same sandbox: the kernel alone would let us trace it.
                let sibling = try await runtime.startGuest("setInterval(() => {}, 1000); console.log('sibling up');")
                try await sibling.stdout.waitUntilContains("sibling up", timeout: .seconds(20))
                let result = try await EscapeProbe.run(probe, arguments: ["\(sibling.process.pid)"], hostBinary: binary, in: runtime)
                #expect(sibling.process.termination == nil, "the sibling died: \(sibling.stderr.text)")
                return result
            }
        }
        #expect(result.firstLine.hasPrefix("BLOCKED \(probe) "), "\(result)")
        #expect(result.termination == .exited(0), "\(result)")
    }

    @Test("the suite runs every probe the binary has")
    func everyProbeRuns() async throws {
        let binary = try EscapeProbe.hostPath()
        #expect(try await EscapeProbe.listed(by: binary) == Self.probes)
    }
}

// MARK: - Node-level escapes

/// Escapes a plain node guest can try with its own APIs: host files, paths out
/// of the root, child processes, the host's sockets, other sandboxes' ids.
@Suite("Escape: node guests", .needsRoot, .timeLimit(.minutes(3)))
struct EscapeNodeTests {
    /// Prints the error code of reading `process.argv[2]`, or `CONTENT <json>` when it could be read.
    static let readFile = """
        try { console.log("CONTENT " + JSON.stringify(require("fs").readFileSync(process.argv[2], "utf8"))); }
        catch (error) { console.log(error.code); }
        """

    @Test("/etc/shadow does not exist in the guest")
    func shadowUnreadable() async throws {
        try #require(FileManager.default.fileExists(atPath: "/etc/shadow"), "control: the host has an /etc/shadow")
        let result = try await withRuntime { try await $0.runGuest(Self.readFile, arguments: ["/etc/shadow"]) }
        #expect(["ENOENT", "EACCES"].contains(result.firstLine), "\(result)")
    }

    @Test(
        "host files are not reachable through /proc links or ..",
        arguments: [
            "/proc/1/root/etc/hostname", "/proc/1/cwd/etc/hostname", "/proc/self/root/etc/hostname",
            "/proc/self/cwd/../../etc/hostname", "/workspace/../../../etc/hostname", "/proc/2/root/../../etc/hostname",
        ])
    func hostFileThroughProc(path: String) async throws {
        let host = try #require(HostCensus.readText("/etc/hostname"), "control: the host has an /etc/hostname")
        let result = try await withRuntime { try await $0.runGuest(Self.readFile, arguments: [path]) }
        #expect(result.termination == .exited(0), "\(result)")
        if result.firstLine.hasPrefix("CONTENT ") {
            let content = try JSONDecoder().decode(String.self, from: Data(result.firstLine.dropFirst(8).utf8))
            #expect(content != host, "the guest read the host's /etc/hostname through \(path)")
            #expect(content == "sandbox\n", "\(result)")
        } else {
            #expect(["EACCES", "ENOENT", "EPERM"].contains(result.firstLine), "\(result)")
        }
    }

    @Test("/proc/self/cwd/../../etc lists the sandbox's /etc, not the host's")
    func etcThroughCwd() async throws {
        // The skeleton, plus the loader's cache that node's ld.so reads and the host zone's
        // link (bound read-only on purpose, RuntimeBinds.swift).
        let sandboxEtc = Set(try FileManager.default.contentsOfDirectory(atPath: PackagePaths.root + "/rootfs/skeleton/etc"))
            .union(["ld.so.cache", "localtime"])
        let host = Set(try FileManager.default.contentsOfDirectory(atPath: "/etc"))
        try #require(!host.subtracting(sandboxEtc).isEmpty, "control: the host's /etc has files the sandbox's lacks")
        let result = try await withRuntime { runtime in
            try await runtime.runGuest(
                #"const fs = require("fs"); console.log(JSON.stringify([fs.readdirSync("/proc/self/cwd/../../etc"), fs.readdirSync("/etc")]));"#)
        }
        let listings = try result.json([[String]].self)
        try #require(listings.count == 2, "\(result)")
        #expect(Set(listings[0]) == Set(listings[1]))
        #expect(Set(listings[0]).isSubset(of: sandboxEtc), "host entries: \(Set(listings[0]).subtracting(sandboxEtc))")
    }

    @Test(".. from /workspace stops at the sandbox's root")
    func dotDotFromWorkspace() async throws {
        // /sys holds only the view of the sandbox's own cgroups (the probe sys_census checks what is in it).
        let sandboxRoot: Set<String> = [
            "bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sys", "tmp", "usr", "workspace", "mnt",
        ]
        let hostOnly = Set(try FileManager.default.contentsOfDirectory(atPath: "/")).subtracting(sandboxRoot)
        try #require(hostOnly.contains("work"), "control: the host's / has entries the sandbox's lacks")
        let result = try await withRuntime { runtime in
            try await runtime.runGuest(
                #"const fs = require("fs"); process.chdir("/workspace"); console.log(JSON.stringify([fs.readdirSync("../../../.."), fs.readdirSync("/")]));"#)
        }
        let listings = try result.json([[String]].self)
        try #require(listings.count == 2, "\(result)")
        #expect(Set(listings[0]) == Set(listings[1]))
        #expect(Set(listings[0]).isDisjoint(with: hostOnly), "host entries: \(Set(listings[0]).intersection(hostOnly))")
    }

    @Test("nothing outside /workspace and /tmp is writable, while both of those are")
    func writesOutside() async throws {
        let result = try await withRuntime { runtime in
            try await runtime.runGuest(
                """
                const fs = require("fs");
                const attempt = (path) => { try { fs.writeFileSync(path, "x"); return "written"; } catch (error) { return error.code; } };
                const outside = {};
                for (const path of ["/x", "/etc/x", "/etc/passwd", "/usr/x", "/usr/bin/node", "/lib/x", "/dev/x", "/proc/x", "/proc/1/environ"])
                  outside[path] = attempt(path);
                console.log(JSON.stringify({ outside, workspace: attempt("/workspace/x"), tmp: attempt("/tmp/x") }));
                """)
        }
        struct Outcome: Decodable {
            var outside: [String: String]
            var workspace: String
            var tmp: String
        }
        let outcome = try result.json(Outcome.self)
        #expect(outcome.outside.count == 9, "\(result)")
        for (path, code) in outcome.outside {
            #expect(["EROFS", "EACCES", "ENOENT", "EPERM"].contains(code), "\(path): \(code)")
        }
        #expect(outcome.workspace == "written")
        #expect(outcome.tmp == "written")
    }

    @Test("node's own binary cannot be opened for writing through /proc/self/exe")
    func selfExe() async throws {
        let result = try await withRuntime { runtime in
            try await runtime.runGuest(
                #"try { require("fs").openSync("/proc/self/exe", "r+"); console.log("opened"); } catch (error) { console.log(error.code); }"#)
        }
        #expect(["EROFS", "EACCES", "ETXTBSY", "EPERM"].contains(result.firstLine), "\(result)")
    }

    @Test("child processes fail with EPERM when denied, while worker threads still run")
    func childProcessDenied() async throws {
        let result = try await withRuntime { runtime in
            try await runtime.runGuest(
                """
                const childProcess = require("child_process");
                const { Worker } = require("worker_threads");
                const spawned = childProcess.spawnSync(process.execPath, ["-e", "0"]);
                let exec;
                try { childProcess.execFileSync(process.execPath, ["-e", "0"]); exec = "ran"; } catch (error) { exec = error.code; }
                new Worker("require('worker_threads').parentPort.postMessage(6 * 7)", { eval: true })
                  .on("message", (worker) => console.log(JSON.stringify({ spawn: spawned.error ? spawned.error.code : "ran", exec, worker })))
                  .on("error", (error) => console.log(JSON.stringify({ spawn: "?", exec, worker: String(error) })));
                """)
        }
        struct Outcome: Decodable, Equatable {
            var spawn: String
            var exec: String
            var worker: Int
        }
        #expect(try result.json(Outcome.self) == Outcome(spawn: "EPERM", exec: "EPERM", worker: 42), "\(result)")
    }

    @Test("a TCP service on the host's loopback is refused and sees no connection", arguments: [EscapeHostListener.Kind.ipv4Loopback, .ipv6Loopback])
    func hostLoopback(kind: EscapeHostListener.Kind) async throws {
        let listener = try EscapeHostListener(kind)
        defer { listener.close() }
        let host = if case .ipv6Loopback = kind { "::1" } else { "127.0.0.1" }
        let result = try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            try await runtime.runGuest(Self.connect(#"{ host: \#(GuestPrograms.jsString(host)), port: \#(listener.port) }"#))
        }
        #expect(result.firstLine == "error ECONNREFUSED", "\(result)")
        #expect(listener.drain() == 0, "the host service accepted a connection from the guest")
        try listener.connectFromHost()
        #expect(listener.drain() == 1, "control: a connection from the host is counted")
    }

    @Test("an abstract unix socket bound on the host is refused and sees no connection")
    func hostAbstractSocket() async throws {
        let name = "secure-exec-test-\(UUID().uuidString)"
        let listener = try EscapeHostListener(.abstractUnix(name))
        defer { listener.close() }
        // No network permission needed: unix sockets are always allowed, so only the namespace stands in the way.
        let result = try await withRuntime { runtime in
            try await runtime.runGuest(Self.connect("{ path: \(GuestPrograms.jsString("\0" + name)) }"))
        }
        #expect(result.firstLine == "error ECONNREFUSED", "\(result)")
        #expect(listener.drain() == 0, "the host socket accepted a connection from the guest")
        try listener.connectFromHost()
        #expect(listener.drain() == 1, "control: a connection from the host is counted")
    }

    @Test("an address off the loopback fails with ENETUNREACH", arguments: ["10.255.255.1", "192.0.2.1"])
    func noRoute(address: String) async throws {
        let result = try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            try await runtime.runGuest(
                """
                const socket = require("net").connect({ host: \(GuestPrograms.jsString(address)), port: 80 });
                socket.on("connect", () => { console.log("connected"); socket.destroy(); });
                socket.on("error", (error) => console.log(JSON.stringify({ code: error.code })));
                """)
        }
        struct Outcome: Decodable {
            var code: String
        }
        let outcome = try result.json(Outcome.self)
        #expect(outcome.code == "ENETUNREACH", "\(result)")
    }

    @Test("with the network denied, connect, listen and UDP fail with EPERM")
    func networkDenied() async throws {
        let result = try await withRuntime { runtime in
            try await runtime.runGuest(
                """
                const results = {};
                const report = (key, value) => { results[key] = value; if (Object.keys(results).length === 3) console.log(JSON.stringify(results)); };
                require("net").connect({ host: "127.0.0.1", port: 3000 })
                  .on("connect", () => report("connect", "connected")).on("error", (error) => report("connect", error.code));
                const server = require("http").createServer().listen(3000, "127.0.0.1");
                server.on("listening", () => { report("listen", "listening"); server.close(); }).on("error", (error) => report("listen", error.code));
                try {
                  const udp = require("dgram").createSocket("udp4");
                  udp.on("error", (error) => report("udp", error.code));
                  udp.bind(0, "127.0.0.1", () => { report("udp", "bound"); udp.close(); });
                } catch (error) { report("udp", error.code); }
                """)
        }
        #expect(try result.json([String: String].self) == ["connect": "EPERM", "listen": "EPERM", "udp": "EPERM"], "\(result)")
    }

    @Test("/proc holds only the sandbox's init and guests, nothing of the host's")
    func procShowsOnlyTheSandbox() async throws {
        let hostCommandLine = (HostCensus.readText("/proc/self/cmdline") ?? "").split(separator: "\0").map(String.init)
        try #require(!hostCommandLine.isEmpty)
        struct Entry: Decodable {
            var pid: Int
            var cmdline: [String]
        }
        let (entries, guestPid) = try await withRuntime { runtime in
            let guest = try await runtime.startGuest(
                """
                const fs = require("fs");
                const entries = fs.readdirSync("/proc").filter((name) => /^[0-9]+$/.test(name)).map((name) => {
                  let cmdline = [];
                  try { cmdline = fs.readFileSync("/proc/" + name + "/cmdline", "utf8").split("\\0").filter((part) => part.length); } catch {}
                  return { pid: Number(name), cmdline };
                });
                console.log(JSON.stringify(entries));
                """)
            let result = try await guest.finish()
            return (try result.json([Entry].self), guest.process.pid)
        }
        #expect(Set(entries.map(\.pid)) == [1, Int(guestPid)], "\(entries.map { "\($0.pid) \($0.cmdline)" })")
        for entry in entries {
            let program = (entry.cmdline.first.map { ($0 as NSString).lastPathComponent }) ?? ""
            #expect(["node", "secure-exec-init"].contains(program), "pid \(entry.pid): \(entry.cmdline)")
            #expect(entry.cmdline != hostCommandLine, "the guest sees the host test process as pid \(entry.pid)")
            #expect(!entry.cmdline.contains { $0.contains(hostCommandLine[0]) }, "pid \(entry.pid): \(entry.cmdline)")
        }
    }

    @Test("two runtimes' guests run as different host uid ranges, neither of them root")
    func distinctUidRanges() async throws {
        let readMap = #"console.log(require("fs").readFileSync("/proc/self/uid_map", "utf8"));"#
        let maps = try await withRuntime { first in
            try await withRuntime { second in
                async let a = first.runGuest(readMap)
                async let b = second.runGuest(readMap)
                return try await [a.stdout, b.stdout]
            }
        }
        // Each line: inside, outside, count.
        let ranges: [[(inside: Int, outside: Int, count: Int)]] = maps.map { map in
            map.split(separator: "\n").compactMap { line in
                let numbers = line.split(separator: " ").compactMap { Int($0) }
                return numbers.count == 3 ? (numbers[0], numbers[1], numbers[2]) : nil
            }
        }
        try #require(ranges.allSatisfy { !$0.isEmpty }, "\(maps)")
        let bases = ranges.map { $0[0].outside - $0[0].inside }
        #expect(bases[0] != bases[1], "both runtimes map onto host uid \(bases[0])")
        for range in ranges.joined() {
            #expect(!(range.outside..<(range.outside + range.count)).contains(0), "a guest uid maps to host root: \(maps)")
        }
        #expect(bases.allSatisfy { $0 != 0 })
    }

    @Test("a setuid-root file with cap_sys_admin+ep gives the guest neither root nor the capability")
    func setuidAndFileCapabilities() async throws {
        let probe = try EscapeProbe.hostPath()
        try await withHostDirectory { directory in
            let copy = directory + "/secure-exec-probe"
            try FileManager.default.copyItem(atPath: probe, toPath: copy)
            try #require(chown(copy, 0, 0) == 0 && chmod(copy, 0o4755) == 0, "chmod 04755: \(String(cString: strerror(errno)))")
            // struct vfs_cap_data, revision 2: magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
            // then (permitted, inheritable) for capabilities 0-31 and 32-63; CAP_SYS_ADMIN is bit 21.
            var capability: [UInt8] = []
            for word: UInt32 in [0x0200_0001, 1 << 21, 0, 0, 0] { withUnsafeBytes(of: word.littleEndian) { capability += $0 } }
            try EscapeXattr.set(copy, name: "security.capability", value: capability)
            // Control: the file really is setuid root with the capability attached.
            var info = stat()
            try #require(stat(copy, &info) == 0)
            try #require(info.st_uid == 0 && info.st_mode & S_ISUID != 0)
            #expect(try EscapeXattr.get(copy, name: "security.capability") == capability)

            let result = try await withRuntime(permissions: EscapeProbe.permissions, mounts: [EscapeProbe.mount(for: copy)]) {
                try await EscapeProbe.run("whoami", hostBinary: copy, in: $0)
            }
            #expect(result.firstLine.hasPrefix("BLOCKED whoami "), "\(result)")
            #expect(result.firstLine.contains(" euid=1000 "), "\(result)")
            #expect(result.firstLine.contains(" CapEff=0000000000000000"), "\(result)")
        }
    }

    /// Prints `connected` or `error <code>` for a net.connect with `options` (a JS object literal).
    static func connect(_ options: String) -> String {
        """
        const socket = require("net").connect(\(options));
        socket.on("connect", () => { console.log("connected"); socket.destroy(); });
        socket.on("error", (error) => console.log("error " + error.code));
        """
    }
}

// MARK: - Limits

/// A guest that tries to exhaust memory, CPU, processes, disk or the host's
/// patience is stopped at its limit, and the runtime (and host) carry on.
@Suite("Escape: resource limits hold", .serialized, .needsRoot, .timeLimit(.minutes(3)))
struct EscapeLimitTests {
    static let aliveCheck = #"console.log("still alive");"#

    @Test("a memory bomb is killed for memory, and the next guest in the runtime still runs")
    func memoryBomb() async throws {
        try await withRuntime(limits: Limits(memoryBytes: 64 << 20)) { runtime in
            let bomb = try await runtime.runGuest(
                """
                const kept = [];
                for (;;) kept.push(Buffer.alloc(4 << 20, 1));  // filled, so every page is touched
                """)
            #expect(bomb.termination == .outOfMemory, "\(bomb)")
            let next = try await runtime.runGuest(Self.aliveCheck)
            #expect(next.termination == .exited(0) && next.firstLine == "still alive", "\(next)")
        }
    }

    @Test("a CPU spin ends at its CPU-time limit")
    func cpuSpin() async throws {
        let result = try await withRuntime(limits: Limits(cpuTimePerProcess: .seconds(1))) {
            try await $0.runGuest("for (;;) {}")
        }
        #expect(result.termination == .cpuLimit, "\(result)")
    }

    @Test("a guest past its spawn timeout is killed and gone")
    func timeout() async throws {
        try await withRuntime { runtime in
            let guest = try await runtime.startGuest("setInterval(() => {}, 1000);", timeout: .milliseconds(500))
            let ended = try await guest.finish()
            #expect(ended.termination == .timedOut, "\(ended)")
            #expect(guest.process.termination == .timedOut)
            let check = try await runtime.runGuest(
                #"console.log(require("fs").existsSync("/proc/" + process.argv[2]) ? "present" : "gone");"#,
                arguments: ["\(guest.process.pid)"])
            #expect(check.firstLine == "gone", "\(check)")
        }
    }

    @Test("a fork bomb stops at the process limit with EAGAIN, and the runtime is still usable")
    func forkBomb() async throws {
        let binary = try EscapeProbe.hostPath()
        try await withRuntime(
            permissions: EscapeProbe.permissions, limits: Limits(maxProcesses: 64), mounts: [EscapeProbe.mount(for: binary)]
        ) { runtime in
            let bomb = try await EscapeProbe.run("forkbomb", hostBinary: binary, in: runtime)
            #expect(bomb.firstLine.hasPrefix("BLOCKED forkbomb forked "), "\(bomb)")
            #expect(bomb.firstLine.hasSuffix("then fork failed: EAGAIN"), "\(bomb)")
            let forked = bomb.firstLine.split(separator: " ").dropFirst(3).first.flatMap { Int($0) }
            #expect(forked.map { $0 < 64 } == true, "\(bomb)")
            let next = try await runtime.runGuest(Self.aliveCheck)
            #expect(next.termination == .exited(0) && next.firstLine == "still alive", "\(next)")
        }
    }

    /// Writes 1 MiB chunks to `process.argv[2]` until a write fails; prints `<code> <bytes written>`.
    static let fill = """
        const fs = require("fs");
        const chunk = Buffer.alloc(1 << 20, 120);
        let written = 0;
        try {
          const fd = fs.openSync(process.argv[2], "w");
          for (let i = 0; i < 64; i++) written += fs.writeSync(fd, chunk);
          console.log("NOERROR " + written);
        } catch (error) { console.log(error.code + " " + written); }
        """

    @Test("filling /tmp or the workspace ends in ENOSPC at its size, and the runtime is still usable", arguments: ["/tmp", "/workspace"])
    func fillDisk(area: String) async throws {
        let limits = area == "/tmp" ? Limits(tmpBytes: 8 << 20) : Limits(workspaceBytes: 8 << 20)
        try await withRuntime(limits: limits) { runtime in
            let filler = try await runtime.runGuest(Self.fill, arguments: [area + "/fill"])
            let words = filler.firstLine.split(separator: " ")
            #expect(words.first == "ENOSPC", "\(filler)")
            #expect(words.last.flatMap { Int($0) }.map { $0 <= 8 << 20 } == true, "\(filler)")
            do {
                let next = try await runtime.runGuest(Self.aliveCheck)
                #expect(next.termination == .exited(0) && next.firstLine == "still alive", "\(next)")
            } catch {
                Issue.record("after a guest filled \(area), the runtime can no longer start a guest: \(error)")
            }
        }
    }

    @Test("1 GiB of stdout delivers exactly the 1 MiB cap, the guest completes, and the host's memory stays flat")
    func stdoutFlood() async throws {
        // This process's memory is measured: not while another test holds tens of MiB.
        try await measuredExclusively { try await Self.floodStdout() }
    }

    private static func floodStdout() async throws {
        let cap = 1 << 20
        let memory = ResidentMemoryWatch.sampling()
        try await withRuntime(limits: Limits(outputBytesPerStream: cap)) { runtime in
            let flood = try await runtime.startGuest(
                """
                const chunk = Buffer.alloc(1 << 20, 97);
                let sent = 0;
                const pump = () => {
                  while (sent < 1024) {
                    sent++;
                    if (!process.stdout.write(chunk)) { process.stdout.once("drain", pump); return; }
                  }
                  process.stderr.write("sent " + sent + " MiB\\n");
                };
                pump();
                """, stdoutKeep: 2 << 20)
            let termination = try await flood.process.wait()
            await memory.stop()
            #expect(termination == .exited(0), "stderr: \(flood.stderr.text)")
            #expect(flood.stderr.text == "sent 1024 MiB\n")
            #expect(flood.stdout.count == cap)
            #expect(flood.process.stdoutTruncated)
            #expect(!flood.process.stderrTruncated)
        }
        let growth = memory.peakGrowth
        #expect(growth < 64 << 20, "the test process grew by \(growth >> 20) MiB during the flood")
    }

    @Test("writeStdin to a guest that never reads waits without blocking the host, and ends when cancelled")
    func stdinNeverRead() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let server = try await runtime.startGuest(
                #"require("http").createServer((req, res) => res.end("serving")).listen(3000, "127.0.0.1", () => console.log("up"));"#)
            try await server.stdout.waitUntilContains("up", timeout: .seconds(20))
            let finished = Mutex(false)
            let writer = Task { () -> SecureExecError? in
                defer { finished.withLock { $0 = true } }
                do throws(SecureExecError) {
                    try await server.process.writeStdin([UInt8](repeating: 120, count: 8 << 20))
                    return nil
                } catch {
                    return error
                }
            }
            // The host and the same guest keep serving while the write waits.
            try await runtime.waitForListener(port: 3000, process: server.process)
            let response = try await runtime.fetch(3000)
            #expect(response.bodyText == "serving")
            let other = try await runtime.runGuest(Self.aliveCheck)
            #expect(other.firstLine == "still alive", "\(other)")
            #expect(!finished.withLock { $0 }, "8 MiB went into a guest that never reads stdin")

            writer.cancel()
            let outcome = await value(of: writer, within: .seconds(5))
            if let outcome {
                #expect(outcome?.code == .cancelled, "writeStdin ended with \(String(describing: outcome))")
            } else {
                // Not ended by cancellation: disposing the runtime must end it.
                Issue.record("writeStdin did not end within 5 s of its task being cancelled")
                await runtime.dispose()
                let afterDispose = await value(of: writer, within: .seconds(5))
                #expect(afterDispose != nil, "writeStdin did not end after dispose either")
            }
        }
    }

    @Test("a guest that closes stdout early still exits cleanly, and its stderr arrives")
    func closedStdout() async throws {
        let result = try await withRuntime { runtime in
            try await runtime.runGuest(
                #"require("fs").closeSync(1); process.stderr.write("stderr after closing stdout\n"); process.exitCode = 0;"#)
        }
        #expect(result.termination == .exited(0), "\(result)")
        #expect(result.stderr == "stderr after closing stdout\n")
        #expect(result.stdout == "")
    }
}

// MARK: - Supervisor killed

/// A supervisor killed with SIGKILL (no cleanup code runs) takes its sandbox
/// with it, every time: 200 hosts, each killed right after its guest is up.
@Suite("Escape: SIGKILLed supervisors leave no sandbox behind", .serialized, .needsRoot, .timeLimit(.minutes(2)))
struct EscapeSupervisorKillTests {
    static let hosts = 200
    static let batch = 8

    @Test("200 SIGKILLed hosts leave no init and no guest running")
    func killedHosts() async throws {
        _ = try PackagePaths.requireProduct("secure-exec-test-host")
        let runID = UUID().uuidString
        var recorded: [HostProcessEntry] = []
        // The killed hosts could not remove their cgroups; the test does.
        defer { HostCensus.removeCgroups(ofSupervisors: Set(recorded.filter(\.isSandboxInit).map(\.parent))) }
        var index = 0
        while index < Self.hosts {
            let count = min(Self.batch, Self.hosts - index)
            let found = try await withThrowingTaskGroup(of: [HostProcessEntry].self) { group in
                for offset in 0..<count {
                    let marker = "escape-\(runID)-\(index + offset)"
                    group.addTask { try await Self.startAndKill(marker: marker) }
                }
                var all: [HostProcessEntry] = []
                for try await processes in group { all += processes }
                return all
            }
            recorded += found
            index += count
        }
        #expect(recorded.filter(\.isSandboxInit).count == Self.hosts, "found an init for each host")
        #expect(recorded.filter(\.isGuestNode).count == Self.hosts, "found a guest for each host")

        let survivors = { () -> [HostProcessEntry] in
            let fromRecord = recorded.filter(HostCensus.isRunning)
            // Also any guest carrying one of this run's markers, recorded or not.
            let marked = HostCensus.processes().filter {
                $0.isGuestNode && $0.isRunning
                    && (HostCensus.environment(of: $0.pid)?["SECURE_EXEC_TEST_MARKER"]?.hasPrefix("escape-\(runID)-") ?? false)
            }
            return Array(Set(fromRecord + marked))
        }
        var left = survivors()
        let gone = await poll(for: .seconds(10), every: .milliseconds(50)) {
            left = survivors()
            return left.isEmpty
        }
        #expect(gone, "still running 10 s after their hosts were killed: \(left)")
    }

    /// Starts one host, waits for READY, records it and its sandbox's init and guest, SIGKILLs it, and
    /// waits for its exit and for the end of its output.
    static func startAndKill(marker: String) async throws -> [HostProcessEntry] {
        let host = try TestHost.start([marker])
        defer { host.stop() }
        var found: [HostProcessEntry] = HostCensus.process(host.pid).map { [$0] } ?? []
        do {
            try await host.waitUntilReady()
            let inits = HostCensus.children(of: host.pid).filter(\.isSandboxInit)
            let guests = HostCensus.processes().filter { guest in inits.contains { $0.pid == guest.parent } && guest.isGuestNode }
            #expect(inits.count == 1 && guests.count == 1, "host \(host.pid): inits \(inits), guests \(guests)")
            found += inits + guests
        } catch {
            Issue.record("host \(marker) did not become ready: \(error)")
        }
        kill(host.pid, SIGKILL)
        try await host.waitForExit(includingOutput: false, timeout: .seconds(10))
        // The sandbox holds none of the host's pipes, so both end with the host.
        do {
            try await host.waitForExit(timeout: .seconds(10))
        } catch {
            Issue.record("host \(marker)'s output pipes stayed open 10 s after it was killed: something still holds them")
        }
        return found
    }
}
