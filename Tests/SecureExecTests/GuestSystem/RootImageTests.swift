import Foundation
import TestSupport
import Testing

@testable import SecureExec

#if canImport(Glibc)
import Glibc
#endif

/// `create(root:)` chooses what the read-only root holds: `.standard` (node,
/// npm, npx, busybox's shell and tools), `.minimal` (node only), `.host` (the
/// host's /usr and a curated /etc) or `.directory` (an operator's root, with
/// SecureExec's files laid over it). In every one, everything but the
/// writable areas and the device nodes is read-only and nothing is setuid.
@Suite("Guest system: root images", .needsRoot, .timeLimit(.minutes(2)))
struct RootImageTests {
    /// The directories and files each root shows at its top and in /usr/bin.
    struct Layout: Decodable {
        var root: [String]
        var usrBin: [String]
        var etc: [String]
    }

    static let layoutProbe = """
        const fs = require("fs");
        const list = (path) => { try { return fs.readdirSync(path).sort(); } catch (error) { return [error.code]; } };
        console.log(JSON.stringify({ root: list("/"), usrBin: list("/usr/bin"), etc: list("/etc") }));
        """

    static let skeletonEtc = ["group", "hostname", "hosts", "nsswitch.conf", "os-release", "passwd", "resolv.conf"]
    /// `/etc/localtime`, the host zone's link, in every image when the host has a zone.
    static let zoneEtc = RuntimeBinds.timeZone() == nil ? [] : ["localtime"]

    func layout(_ root: RootImage) async throws -> Layout {
        let result = try await withRuntime(root: root) { runtime in try await runtime.exec(Self.layoutProbe) }
        try #require(result.termination == .exited(0), "\(result.summary)")
        return try JSONDecoder().decode(Layout.self, from: Data(result.stdout))
    }

    @Test(".standard holds node, npm, npx and env in /usr/bin, busybox and its tools in /bin, nothing of the host's else")
    func standardLayout() async throws {
        let seen = try await layout(.standard)
        // sys: the read-only view of the sandbox's own cgroups (the default limits make cgroups).
        #expect(seen.root == ["bin", "dev", "etc", "lib", "lib64", "proc", "sys", "tmp", "usr", "workspace"])
        #expect(seen.usrBin == ["env", "node", "npm", "npx"])
        #expect(seen.etc == (Self.skeletonEtc + Self.zoneEtc + ["ld.so.cache"]).sorted())
    }

    @Test(".minimal holds node and its libraries only: no /bin, no shell, no npm")
    func minimalLayout() async throws {
        let seen = try await layout(.minimal)
        #expect(seen.root == ["dev", "etc", "lib", "lib64", "proc", "sys", "tmp", "usr", "workspace"])
        #expect(seen.usrBin == ["node"])
    }

    @Test("every tool .standard links is an applet of the busybox it runs")
    func standardTools() async throws {
        let result = try await withRuntime(permissions: Permissions(childProcess: .allow)) { runtime in
            try await runtime.execCommand(
                """
                busybox --list > /tmp/applets
                for tool in \(GuestRoot.busyboxApplets.map { "'\($0)'" }.joined(separator: " ")); do
                  [ "$(readlink "/bin/$tool")" = busybox ] || echo "not linked: $tool"
                  grep -qxF -- "$tool" /tmp/applets || echo "not an applet: $tool"
                done
                [ "$(readlink /usr/bin/env)" = /bin/busybox ] || echo "env is not busybox"
                echo checked
                """)
        }
        #expect(result.stdoutText == "checked\n", "\(result.summary)")
    }

    @Test(".standard's tools work together the way scripts use them")
    func standardToolsWork() async throws {
        let result = try await withRuntime(permissions: Permissions(childProcess: .allow)) { runtime in
            try await runtime.execCommand(
                """
                set -e
                mkdir -p d/sub && echo hello > d/f && cp d/f d/g && mv d/g d/h && ln -s f d/l && chmod 600 d/f && touch d/t
                rmdir d/sub && rm d/t
                ls d | sort | tr '\\n' ' '; echo
                cat d/l | wc -c | tr -d ' '
                grep -c hello d/h; sed s/hello/bye/ d/f; find d -name h
                echo "a b c" | cut -d' ' -f2 | uniq; printf '%s-%s\\n' x y
                basename /x/y.js .js; dirname /x/y.js; pwd
                tar czf /tmp/t.tgz d && gzip -t /tmp/t.tgz && tar tzf /tmp/t.tgz | head -1
                printf '1\\n2\\n3\\n' | tail -1; printf '3\\n1\\n' | head -1
                echo one two | xargs -n1 | wc -l | tr -d ' '
                [ -d d ] && test -f d/f && true && ! false && echo tests
                date +%Y | grep -qE '^[0-9]{4}$' && echo dated
                f=$(mktemp) && [ -f "$f" ] && echo temp; sleep 0; env | grep -q '^HOME=/workspace$' && echo env
                """)
        }
        #expect(
            result.stdoutText
                == "f h l \n6\n1\nbye\nd/h\nb\nx-y\ny\n/x\n/workspace\nd/\n3\n3\n2\ntests\ndated\ntemp\nenv\n",
            "\(result.summary)")
    }

    @Test(".host runs the host's git and python3 and shows no /etc/shadow, /home, /root, /run or /var")
    func hostRoot() async throws {
        let hasGit = access("/usr/bin/git", X_OK) == 0
        let hasPython = access("/usr/bin/python3", X_OK) == 0
        let result = try await withRuntime(root: .host, permissions: Permissions(childProcess: .allow)) { runtime in
            try await runtime.execCommand(
                """
                \(hasGit ? "git --version" : "echo 'git version (not on this host)'")
                \(hasPython ? "python3 -c 'print(1)'" : "echo 1")
                for path in /etc/shadow /etc/gshadow /home /root /run /var /opt /srv /boot /mnt; do
                  [ -e "$path" ] && echo "visible: $path"
                done
                ls /etc | tr '\\n' ' '; echo
                readlink /bin
                """)
        }
        let lines = result.stdoutText.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        try #require(lines.count >= 4, "\(result.summary)")
        #expect(lines[0].hasPrefix("git version "), "\(result.summary)")
        #expect(lines[1] == "1", "\(result.summary)")
        let etc = Set(lines[2].split(separator: " ").map(String.init))
        let allowed = Set(Self.skeletonEtc + Self.zoneEtc + GuestRoot.hostEtcFiles.map { String($0.split(separator: "/")[0]) })
        #expect(etc.isSubset(of: allowed), "host entries in /etc: \(etc.subtracting(allowed))")
        #expect(etc.contains("passwd") && etc.contains("ld.so.cache"))
        let hostBin = try? FileManager.default.destinationOfSymbolicLink(atPath: "/bin")
        #expect(lines[3] == (hostBin ?? ""), "/bin is laid out as the host's: \(result.summary)")
    }

    @Test(".host's /etc/passwd and group are the sandbox's, not the host's")
    func hostIdentity() async throws {
        let result = try await withRuntime(root: .host, permissions: Permissions(childProcess: .allow)) { runtime in
            try await runtime.execCommand("cat /etc/passwd; id -un")
        }
        let skeleton = try String(contentsOfFile: PackagePaths.root + "/rootfs/skeleton/etc/passwd", encoding: .utf8)
        #expect(result.stdoutText == skeleton + "sandbox\n", "\(result.summary)")
    }

    @Test("every mount of every image is nosuid, and all but the writable areas and device nodes read-only",
          arguments: [RootImage.standard, .minimal, .host])
    func readOnlyEverywhere(root: RootImage) async throws {
        try await withRuntime(root: root) { runtime in
            try await Self.checkMounts(runtime)
        }
    }

    /// Reads the guest's mount table and checks each mount's options, and that writing outside the writable areas fails.
    static func checkMounts(_ runtime: NodeRuntime) async throws {
        let result = try await runtime.exec(
            """
            const fs = require("fs");
            const mounts = fs.readFileSync("/proc/self/mountinfo", "utf8").trim().split("\\n").map((line) => {
              const fields = line.split(" ");
              return { point: fields[4], options: fields[5].split(",") };
            });
            const attempt = (path) => { try { fs.writeFileSync(path, "x"); return "written"; } catch (error) { return error.code; } };
            const writes = {};
            for (const path of ["/x", "/bin/x", "/usr/bin/x", "/usr/bin/node", "/etc/passwd", "/lib/x"]) writes[path] = attempt(path);
            console.log(JSON.stringify({ mounts, writes }));
            """)
        struct Seen: Decodable {
            struct Entry: Decodable {
                var point: String
                var options: [String]
            }
            var mounts: [Entry]
            var writes: [String: String]
        }
        let seen = try JSONDecoder().decode(Seen.self, from: Data(result.stdout))
        try #require(!seen.mounts.isEmpty, "\(result.summary)")
        let devices = Set(["null", "zero", "full", "random", "urandom", "tty"].map { "/dev/" + $0 })
        for mount in seen.mounts {
            #expect(mount.options.contains("nosuid"), "\(mount.point) \(mount.options)")
            let writable = ["/workspace", "/tmp"].contains(mount.point) || devices.contains(mount.point)
                || mount.point == "/proc" || (mount.point.hasPrefix("/proc/") && !mount.options.contains("ro"))
            if !writable { #expect(mount.options.contains("ro"), "\(mount.point) is writable: \(mount.options)") }
        }
        for (path, outcome) in seen.writes {
            #expect(["EROFS", "EACCES", "ENOENT"].contains(outcome), "\(path): \(outcome)")
        }
    }

    @Test(".directory: node comes from the operator's root, SecureExec's files lie over it, and it is read-only")
    func directoryRoot() async throws {
        try await withBuiltRoot(shell: true) { root in
            try await withHostDirectory { data in
                try HostFiles.write(data + "/data.txt", "mounted\n")
                try await withRuntime(
                    root: .directory(root), permissions: Permissions(childProcess: .allow),
                    mounts: [Mount(host: data, guest: "/opt/data")]
                ) { runtime in
                    let result = try await runtime.execCommand(
                        """
                        cat /etc/motd /opt/data/data.txt; head -1 /etc/passwd
                        node -p 'process.execPath + " " + process.version.startsWith("v")'
                        ls / | tr '\\n' ' '; echo
                        touch /etc/motd /new 2>&1 | wc -l | tr -d ' '
                        """)
                    let skeletonFirst = try String(contentsOfFile: PackagePaths.root + "/rootfs/skeleton/etc/passwd", encoding: .utf8)
                        .split(separator: "\n")[0]
                    #expect(
                        result.stdoutText
                            == "the operator's root\nmounted\n\(skeletonFirst)\n/usr/bin/node true\nbin dev etc lib lib64 opt proc sys tmp usr workspace \n2\n",
                        "\(result.summary)")
                    try await Self.checkMounts(runtime)
                }
            }
        }
    }

    @Test(".directory without /bin/sh: a command fails saying the root has no shell")
    func directoryWithoutShell() async throws {
        try await withBuiltRoot(shell: false) { root in
            try await withRuntime(root: .directory(root), permissions: Permissions(childProcess: .allow)) { runtime in
                let ran = try await runtime.exec("console.log(require('fs').existsSync('/etc/motd'))")
                #expect(ran.stdoutText == "true\n", "\(ran.summary)")
                let error = await expectError(.spawnFailed, errno: ENOENT, mentioning: "has no shell") {
                    try await runtime.spawnCommand("echo hi")
                }
                #expect(error?.message.contains("/bin/sh") == true, "\(String(describing: error))")
            }
        }
    }

    @Test(".directory refuses a path with a symlink, a missing or relative one, and one without /usr/bin/node")
    func directoryBadInput() async throws {
        await expectError(.invalidArgument, mentioning: "does not exist") {
            try await NodeRuntime.create(root: .directory("/nonexistent/secure-exec-root"))
        }
        await expectError(.invalidArgument, mentioning: "absolute") { try await NodeRuntime.create(root: .directory("relative/root")) }
        try await withHostDirectory { directory in
            await expectError(.invalidArgument, mentioning: "/usr/bin/node") {
                try await NodeRuntime.create(root: .directory(directory))
            }
            try HostFiles.symlink(directory + "/link", to: "/")
            await expectError(.invalidArgument, mentioning: "symlink") {
                try await NodeRuntime.create(root: .directory(directory + "/link"))
            }
            try HostFiles.write(directory + "/usr/bin/node", "not a program\n", mode: 0o644)
            await expectError(.invalidArgument, mentioning: "not an executable") {
                try await NodeRuntime.create(root: .directory(directory))
            }
        }
    }

    @Test(".directory refuses a mount whose path passes through a symlink in the operator's root")
    func directoryMountThroughSymlink() async throws {
        try await withBuiltRoot(shell: false) { root in
            try HostFiles.symlink(root + "/srv", to: "/etc")
            try await withHostDirectory { data in
                await expectError(.sandboxSetupFailed, errno: ELOOP) {
                    try await NodeRuntime.create(root: .directory(root), mounts: [Mount(host: data, guest: "/srv/data")])
                }
            }
        }
    }

    @Test("node: is refused with .host and .directory, whose node is their own")
    func nodeWithOwnRoot() async throws {
        await expectError(.invalidArgument, mentioning: "node") { try await NodeRuntime.create(root: .host, node: "/usr/bin/node") }
        await expectError(.invalidArgument, mentioning: "node") {
            try await NodeRuntime.create(root: .directory("/"), node: "/usr/bin/node")
        }
    }

    @Test("a mount may not cover .standard's tools or symlinks")
    func mountOverTools() async throws {
        try await withHostDirectory { directory in
            for guest in ["/bin", "/bin/sh", "/usr/lib/node_modules", "/usr/bin/npm"] {
                await expectError(.invalidArgument, mentioning: guest) {
                    try await NodeRuntime.create(mounts: [Mount(host: directory, guest: guest)])
                }
            }
        }
    }

    @Test("the runtime reports the root it was made with")
    func rootProperty() async throws {
        let roots = try await withRuntime(root: .minimal) { runtime in runtime.root }
        #expect(roots == .minimal)
    }
}
