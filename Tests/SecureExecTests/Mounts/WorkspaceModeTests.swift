import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `workspace: Workspace(host:mode:)` makes a host project directory the
/// guest's `/workspace`. `.overlay` (the default) shows the project, its
/// `node_modules` included, without copying it, and takes the guest's changes
/// into a private layer bounded by `limits.workspaceBytes` that never reaches
/// the host. `.readWrite` edits the project in place, idmapped like a
/// read-write mount, so host and guest see each other's edits as they happen.
/// A workspace host path that is or passes through a symlink is refused.
@Suite("Mounts: workspace from a host project, overlay and read-write", .needsRoot, .timeLimit(.minutes(1)))
struct WorkspaceModeTests {
    /// A small project: an entry that uses a relative module and a package
    /// from its own node_modules, a README and a file the guest will delete.
    static let project: [(path: String, text: String)] = [
        ("package.json", #"{ "name": "demo", "main": "index.js" }"#),
        ("index.js", #"module.exports = require("./lib/greet.js")(require("tiny-pkg"));"#),
        ("lib/greet.js", #"module.exports = (tiny) => "hello " + tiny.name + " from " + require.resolve("tiny-pkg");"#),
        ("lib/old.js", "module.exports = 'old';"),
        ("README.md", "# demo\n"),
        ("node_modules/tiny-pkg/package.json", #"{ "name": "tiny-pkg", "main": "index.js" }"#),
        ("node_modules/tiny-pkg/index.js", #"module.exports = { name: "tiny-pkg" };"#),
    ]

    /// What the project's entry exports.
    static let greeting = "hello tiny-pkg from /workspace/node_modules/tiny-pkg/index.js"

    /// Writes `project` into `directory`, every file and directory owned by `owner`:`group`.
    static func writeProject(into directory: String, owner: uid_t? = nil, group: gid_t? = nil, fileMode: mode_t = 0o644, directoryMode: mode_t = 0o755)
        throws
    {
        for (path, text) in project {
            var parent = directory
            for component in path.split(separator: "/").dropLast() {
                parent += "/" + component
                if !HostFiles.exists(parent) {
                    try HostFiles.makeDirectory(parent, owner: owner, group: group, mode: directoryMode)
                }
            }
            try HostFiles.write(directory + "/" + path, text, owner: owner, group: group, mode: fileMode)
        }
    }

    /// Every file, directory and symlink below `directory` (runtime entry files
    /// included), as relative path → contents, "<dir>" or "-> target".
    static func snapshot(_ directory: String) -> [String: String] {
        var tree: [String: String] = [:]
        func walk(_ relative: String) {
            let path = relative.isEmpty ? directory : directory + "/" + relative
            for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
                let child = relative.isEmpty ? name : relative + "/" + name
                let full = directory + "/" + child
                if HostFiles.isSymlink(full) {
                    tree[child] = "-> " + ((try? FileManager.default.destinationOfSymbolicLink(atPath: full)) ?? "?")
                } else if let info = try? HostFiles.status(full), info.st_mode & S_IFMT == S_IFDIR {
                    tree[child] = "<dir>"
                    walk(child)
                } else {
                    tree[child] = HostFiles.read(full) ?? "<unreadable>"
                }
            }
        }
        walk("")
        return tree
    }

    @Test("a workspace is an overlay unless asked otherwise")
    func overlayIsTheDefault() {
        #expect(Workspace(host: "/srv/project").mode == .overlay)
        #expect(Workspace(host: "/srv/project", mode: .readWrite).mode == .readWrite)
    }

    @Test("an overlay workspace shows the project, node_modules included, and runs it from /workspace")
    func overlaySeesProject() async throws {
        try await withHostDirectory { directory in
            try Self.writeProject(into: directory)
            try await withNodeRuntime(workspace: Workspace(host: directory)) { runtime in
                let result = try await runtime.exec(#"console.log(require("/workspace"));"#)
                #expect(result.termination == .exited(0), "stderr: \(result.stderrText)")
                #expect(result.stdoutText == Self.greeting + "\n")
                #expect(
                    try await runtime.workspaceListing(of: "/workspace") == ["README.md", "index.js", "lib/", "node_modules/", "package.json"])
                #expect(try await runtime.readTextFile("/workspace/lib/old.js") == "module.exports = 'old';")
            }
        }
    }

    @Test("an overlay workspace names no host path in the guest's mount table, and its staging is gone")
    func overlayHidesHostPath() async throws {
        try await withHostDirectory { directory in
            try Self.writeProject(into: directory)
            try await withNodeRuntime(workspace: Workspace(host: directory)) { runtime in
                let result = try await runtime.exec(
                    """
                    const fs = require("fs");
                    console.log(fs.readFileSync("/proc/self/mountinfo", "utf8"));
                    console.log(fs.readdirSync("/dev").join(","));
                    """)
                #expect(result.termination == .exited(0), "stderr: \(result.stderrText)")
                #expect(!result.stdoutText.contains(directory), "\(result.stdoutText)")
                #expect(!result.stdoutText.contains("workspace-layers,"), "\(result.stdoutText)")
                #expect(result.stdoutText.contains(" /workspace "), "\(result.stdoutText)")
            }
        }
    }

    @Test("a private project (0700, files 0600, another uid) is visible and editable in an overlay workspace")
    func overlayPrivateProject() async throws {
        try await withPrivateHostDirectory { directory in
            try Self.writeProject(into: directory, owner: MountIDs.owner, group: MountIDs.group, fileMode: 0o600, directoryMode: 0o700)
            let before = Self.snapshot(directory)
            try await withNodeRuntime(workspace: Workspace(host: directory)) { runtime in
                let output = try await runtime.workspaceOutput(
                    """
                    const fs = require("fs");
                    fs.appendFileSync("/workspace/README.md", "edited\\n");
                    console.log(JSON.stringify([require("/workspace"), fs.readFileSync("/workspace/README.md", "utf8")]));
                    """)
                #expect(output == ##"["\##(Self.greeting)","# demo\nedited\n"]"## + "\n")
            }
            #expect(Self.snapshot(directory) == before)
        }
    }

    struct OverlayView: Decodable, Equatable {
        var index: String
        var greet: String
        var created: String
        var bundle: String
        var old: String
        var readme: String
        var renamed: String
        var package: String
    }

    @Test("changes in an overlay workspace are the guest's alone: the host project is byte-for-byte unchanged, new files absent")
    func overlayChangesStayPrivate() async throws {
        try await withHostDirectory { directory in
            try Self.writeProject(into: directory)
            let before = Self.snapshot(directory)
            try await withNodeRuntime(workspace: Workspace(host: directory)) { runtime in
                let seen = try await runtime.mountJSON(
                    """
                    const read = (p) => attempt(() => fs.readFileSync(p, "utf8"));
                    fs.writeFileSync("/workspace/index.js", "module.exports = 'replaced';");
                    fs.appendFileSync("/workspace/lib/greet.js", "\\n// appended");
                    fs.writeFileSync("/workspace/new.txt", "created in the guest");
                    fs.mkdirSync("/workspace/dist");
                    fs.writeFileSync("/workspace/dist/bundle.js", "bundled");
                    fs.rmSync("/workspace/lib/old.js");
                    fs.renameSync("/workspace/README.md", "/workspace/README.old");
                    fs.writeFileSync("/workspace/node_modules/tiny-pkg/index.js", "module.exports = { name: 'patched' };");
                    console.log(JSON.stringify({
                      index: read("/workspace/index.js"), greet: read("/workspace/lib/greet.js"), created: read("/workspace/new.txt"),
                      bundle: read("/workspace/dist/bundle.js"), old: read("/workspace/lib/old.js"), readme: read("/workspace/README.md"),
                      renamed: read("/workspace/README.old"), package: read("/workspace/node_modules/tiny-pkg/index.js"),
                    }));
                    """, as: OverlayView.self)
                #expect(
                    seen
                        == OverlayView(
                            index: "module.exports = 'replaced';",
                            greet: #"module.exports = (tiny) => "hello " + tiny.name + " from " + require.resolve("tiny-pkg");"# + "\n// appended",
                            created: "created in the guest", bundle: "bundled", old: "ENOENT", readme: "ENOENT", renamed: "# demo\n",
                            package: "module.exports = { name: 'patched' };"))
                // The host's file API sees the guest's layer too.
                #expect(try await runtime.readTextFile("/workspace/new.txt") == "created in the guest")
                try await runtime.writeFile("/workspace/from-api.txt", text: "written through writeFile")
            }
            let after = Self.snapshot(directory)
            #expect(after == before, "added: \(Set(after.keys).subtracting(before.keys).sorted())")
        }
    }

    @Test("each runtime gets a fresh overlay: a second one on the same project sees none of the first one's changes")
    func overlayFreshPerRuntime() async throws {
        try await withHostDirectory { directory in
            try Self.writeProject(into: directory)
            try await withNodeRuntime(workspace: Workspace(host: directory)) { runtime in
                _ = try await runtime.workspaceOutput(
                    #"const fs = require("fs"); fs.writeFileSync("/workspace/new.txt", "first"); fs.writeFileSync("/workspace/index.js", "module.exports = 'changed';");"#)
            }
            try await withNodeRuntime(workspace: Workspace(host: directory)) { runtime in
                let output = try await runtime.workspaceOutput(
                    #"console.log(JSON.stringify([require("fs").existsSync("/workspace/new.txt"), require("/workspace")]));"#)
                #expect(output == #"[false,"\#(Self.greeting)"]"# + "\n")
            }
        }
    }

    @Test("an overlay's changes are bounded by workspaceBytes, while a project larger than that is visible in full (nothing is copied)")
    func overlayBoundedByWorkspaceBytes() async throws {
        try await withHostDirectory { directory in
            try Self.writeProject(into: directory)
            let bigSize = 12 << 20
            guard FileManager.default.createFile(atPath: directory + "/big.bin", contents: Data(repeating: 0x62, count: bigSize)) else {
                throw HostCallError(step: "create big.bin", errno: errno)
            }
            struct Outcome: Decodable {
                var bigRead: Int
                var fill: String
                var written: Int
            }
            let outcome = try await withNodeRuntime(limits: Limits(workspaceBytes: 8 << 20), workspace: Workspace(host: directory)) { runtime in
                try await runtime.mountJSON(
                    """
                    const bigRead = fs.readFileSync("/workspace/big.bin").length;
                    const chunk = Buffer.alloc(1 << 20, 120);
                    let written = 0, fill = "NOERROR";
                    try {
                      const fd = fs.openSync("/workspace/fill", "w");
                      for (let i = 0; i < 32; i++) written += fs.writeSync(fd, chunk);
                      fs.closeSync(fd);
                    } catch (error) { fill = error.code; }
                    console.log(JSON.stringify({ bigRead, fill, written }));
                    """, as: Outcome.self)
            }
            #expect(outcome.bigRead == bigSize)
            #expect(outcome.fill == "ENOSPC")
            #expect(outcome.written <= 8 << 20, "wrote \(outcome.written) bytes into an 8 MiB layer")
            #expect(!HostFiles.exists(directory + "/fill"))
            #expect((try HostFiles.status(directory + "/big.bin")).st_size == bigSize)
        }
    }

    @Test("a read-write workspace edits the project in place, and what the guest creates belongs to the project's owner")
    func readWriteEditsInPlace() async throws {
        try await withPrivateHostDirectory { directory in
            try Self.writeProject(into: directory, owner: MountIDs.owner, group: MountIDs.group, fileMode: 0o600, directoryMode: 0o700)
            try await withNodeRuntime(workspace: Workspace(host: directory, mode: .readWrite)) { runtime in
                let output = try await runtime.workspaceOutput(
                    """
                    const fs = require("fs");
                    const greeting = require("/workspace");
                    fs.writeFileSync("/workspace/README.md", "# demo, edited\\n");
                    fs.mkdirSync("/workspace/out");
                    fs.writeFileSync("/workspace/out/result.txt", greeting);
                    fs.rmSync("/workspace/lib/old.js");
                    console.log("done");
                    """)
                #expect(output == "done\n")
            }
            #expect(HostFiles.read(directory + "/README.md") == "# demo, edited\n")
            #expect(HostFiles.read(directory + "/out/result.txt") == Self.greeting)
            #expect(!HostFiles.exists(directory + "/lib/old.js"))
            for path in ["/out", "/out/result.txt", "/README.md"] {
                let ownership = try HostFiles.ownership(directory + path)
                #expect(ownership.owner == MountIDs.owner && ownership.group == MountIDs.group, "\(path) is \(ownership) on the host")
            }
            #expect(try HostFiles.ownership(directory) == MountOwnership(owner: MountIDs.owner, group: MountIDs.group, mode: 0o700))
        }
    }

    @Test("in a read-write workspace, a host edit fires a running guest's fs.watch and the guest reads the new text")
    func readWriteHostEditSeenByWatch() async throws {
        try await withPrivateHostDirectory { directory in
            try HostFiles.write(directory + "/watched.txt", "v1", owner: MountIDs.owner, group: MountIDs.group, mode: 0o600)
            try await withNodeRuntime(workspace: Workspace(host: directory, mode: .readWrite)) { runtime in
                let guest = try await runtime.startGuest(
                    """
                    const fs = require("fs");
                    fs.watch("/workspace", (event, name) => {
                      if (name !== "watched.txt") return;
                      let text;
                      try { text = fs.readFileSync("/workspace/watched.txt", "utf8"); } catch (error) { text = error.code; }
                      console.log("event " + JSON.stringify(text));
                    });
                    console.log("watching");
                    """)
                do {
                    try await guest.stdout.waitUntilContains("watching")
                    try HostFiles.overwrite(directory + "/watched.txt", "v2 from the host")
                    try await guest.stdout.waitUntilContains(#"event "v2 from the host""#, timeout: .seconds(20))
                } catch {
                    Issue.record("stderr: \(guest.stderr.text)")
                    guest.process.kill(.kill)
                    _ = try await guest.process.wait()
                    throw error
                }
                guest.process.kill()
                _ = try await guest.process.wait()
            }
        }
    }

    @Test("in a read-write workspace, a running guest's edit is on the host at once")
    func readWriteGuestEditSeenByHost() async throws {
        try await withPrivateHostDirectory { directory in
            try HostFiles.write(directory + "/state.txt", "from the host", owner: MountIDs.owner, group: MountIDs.group, mode: 0o600)
            try await withNodeRuntime(workspace: Workspace(host: directory, mode: .readWrite)) { runtime in
                let guest = try await runtime.startGuest(
                    """
                    const fs = require("fs");
                    fs.writeFileSync("/workspace/state.txt", "from the guest");
                    fs.writeFileSync("/workspace/made-by-guest.txt", "new");
                    console.log("written");
                    setInterval(() => {}, 1000);
                    """)
                do {
                    try await guest.stdout.waitUntilContains("written")
                    // The guest is still running: nothing waits for its exit or the sandbox's end.
                    #expect(guest.process.termination == nil)
                    #expect(HostFiles.read(directory + "/state.txt") == "from the guest")
                    #expect(HostFiles.read(directory + "/made-by-guest.txt") == "new")
                } catch {
                    Issue.record("stderr: \(guest.stderr.text)")
                    throw error
                }
                guest.process.kill()
                _ = try await guest.process.wait()
            }
        }
    }

    @Test(
        "a workspace host path that is or passes through a symlink is refused, naming the path",
        arguments: [Workspace.Mode.overlay, .readWrite], ["link-to-project", "link-to-root", "through-link"])
    func symlinkedWorkspaceRefused(mode: Workspace.Mode, layout: String) async throws {
        try await withHostDirectory { directory in
            try HostFiles.makeDirectory(directory + "/real")
            try HostFiles.makeDirectory(directory + "/real/project")
            try HostFiles.write(directory + "/real/project/index.js", "console.log('project');")
            let host: String
            switch layout {
            case "link-to-project":
                try HostFiles.symlink(directory + "/link", to: directory + "/real/project")
                host = directory + "/link"
            case "link-to-root":
                try HostFiles.symlink(directory + "/link", to: "/")
                host = directory + "/link"
            default:
                try HostFiles.symlink(directory + "/link", to: directory + "/real")
                host = directory + "/link/project"
            }
            await expectError(.invalidArgument, mentioning: host, "\(layout) \(mode)") {
                try await NodeRuntime.create(workspace: Workspace(host: host, mode: mode))
            }
        }
    }

    @Test("a workspace host path that is missing, relative or a file is refused", arguments: [Workspace.Mode.overlay, .readWrite])
    func badWorkspacePathRefused(mode: Workspace.Mode) async throws {
        try await withHostDirectory { directory in
            try HostFiles.write(directory + "/file.txt", "not a directory")
            for host in [directory + "/missing", "relative/project", directory + "/file.txt"] {
                await expectError(.invalidArgument, "\(host) \(mode)") {
                    try await NodeRuntime.create(workspace: Workspace(host: host, mode: mode))
                }
            }
        }
    }

    @Test("a node_modules symlink to / planted through a read-write workspace resolves to the guest's root in the next sandbox")
    func plantedNodeModulesLinkInWorkspace() async throws {
        try await withHostDirectory { secretDirectory in
            let secret = secretDirectory + "/secret"
            try HostFiles.write(secret, "host secret", mode: 0o644)
            try await withPrivateHostDirectory { directory in
                try Self.writeProject(into: directory, owner: MountIDs.owner, group: MountIDs.group)
                try await withNodeRuntime(workspace: Workspace(host: directory, mode: .readWrite)) { runtime in
                    _ = try await runtime.workspaceOutput(
                        #"const fs = require("fs"); fs.rmSync("/workspace/node_modules", { recursive: true }); fs.symlinkSync("/", "/workspace/node_modules");"#)
                }
                try #require(HostFiles.isSymlink(directory + "/node_modules"), "the guest's symlink did not reach the host")
                for mode in [Workspace.Mode.overlay, .readWrite] {
                    try await withNodeRuntime(workspace: Workspace(host: directory, mode: mode)) { runtime in
                        let seen = try await runtime.mountJSON(
                            """
                            console.log(JSON.stringify([
                              attempt(() => fs.readFileSync("/workspace/node_modules" + \(GuestPrograms.jsString(secret)), "utf8")),
                              attempt(() => fs.readFileSync("/workspace/node_modules/etc/hostname", "utf8")),
                            ]));
                            """, as: [String].self)
                        #expect(seen == ["ENOENT", "sandbox\n"], "\(mode)")
                    }
                }
            }
            #expect(HostFiles.read(secret) == "host secret")
        }
    }
}
