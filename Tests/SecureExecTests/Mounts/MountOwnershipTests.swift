import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Mounts are idmapped: whoever owns a mount's root directory on the host
/// appears in the guest as the guest itself (uid and gid 1000), and what the
/// guest creates there belongs on the host to that same owner. So a private
/// directory (mode 0700, any uid) is readable, and writable when mounted
/// read-write, without SecureExec or the caller changing any host owner or
/// mode; and a file one sandbox wrote is reopened for writing by the next.
@Suite("Mounts: idmapped ownership", .needsRoot, .timeLimit(.minutes(1)))
struct MountOwnershipTests {
    /// A host owner for a mount's root directory.
    struct HostOwner: Sendable, CustomStringConvertible {
        var uid: uid_t
        var gid: gid_t
        var description: String { "\(uid):\(gid)" }
    }

    /// The issue's example, the guest's own ids (which on the host are nobody's), and a uid differing from the gid.
    static let owners = [
        HostOwner(uid: MountIDs.owner, gid: MountIDs.group), HostOwner(uid: 1000, gid: 1000), HostOwner(uid: 31337, gid: 4243),
    ]

    struct GuestView: Decodable, Equatable {
        var uid: Int
        var gid: Int
        var process: [Int]
        var mode: Int
    }

    @Test("a 0700 directory of another uid, mounted read-only, is readable and appears as the guest's own")
    func privateDirectoryReadable() async throws {
        try await withPrivateHostDirectory { host in
            try HostFiles.write(host + "/secret.txt", "private data", owner: MountIDs.owner, group: MountIDs.group, mode: 0o600)
            try HostFiles.makeDirectory(host + "/nested", owner: MountIDs.owner, group: MountIDs.group, mode: 0o700)
            try HostFiles.write(host + "/nested/deep.txt", "deeper", owner: MountIDs.owner, group: MountIDs.group, mode: 0o600)

            struct Seen: Decodable, Equatable {
                var root: GuestView
                var file: GuestView
                var listing: [String]
                var secret: String
                var deep: String
                var write: String
            }
            let seen = try await withNodeRuntime(mounts: [Mount(host: host, guest: "/data")]) { runtime in
                try await runtime.mountJSON(
                    """
                    const view = (p) => { const s = fs.statSync(p); return { uid: s.uid, gid: s.gid, process: [process.getuid(), process.getgid()], mode: s.mode & 0o7777 }; };
                    console.log(JSON.stringify({
                      root: view("/data"),
                      file: view("/data/secret.txt"),
                      listing: fs.readdirSync("/data").sort(),
                      secret: attempt(() => fs.readFileSync("/data/secret.txt", "utf8")),
                      deep: attempt(() => fs.readFileSync("/data/nested/deep.txt", "utf8")),
                      write: attempt(() => fs.writeFileSync("/data/secret.txt", "changed")),
                    }));
                    """, as: Seen.self)
            }
            #expect(seen.root == GuestView(uid: 1000, gid: 1000, process: [1000, 1000], mode: 0o700))
            #expect(seen.file == GuestView(uid: 1000, gid: 1000, process: [1000, 1000], mode: 0o600))
            #expect(seen.listing == ["nested", "secret.txt"])
            #expect(seen.secret == "private data")
            #expect(seen.deep == "deeper")
            #expect(seen.write == "EROFS")
            // Nothing on the host was changed to make that work.
            #expect(try HostFiles.ownership(host) == MountOwnership(owner: MountIDs.owner, group: MountIDs.group, mode: 0o700))
            #expect(
                try HostFiles.ownership(host + "/secret.txt") == MountOwnership(owner: MountIDs.owner, group: MountIDs.group, mode: 0o600))
            #expect(HostFiles.read(host + "/secret.txt") == "private data")
        }
    }

    @Test("a 0700 directory mounted read-write is writable, and what the guest creates belongs on the host to the directory's owner", arguments: owners)
    func privateDirectoryWritable(owner: HostOwner) async throws {
        try await withHostDirectory(owner: owner.uid, group: owner.gid, mode: 0o700) { host in
            try HostFiles.write(host + "/existing.txt", "before", owner: owner.uid, group: owner.gid, mode: 0o600)

            struct Seen: Decodable, Equatable {
                var results: [String]
                var created: GuestView
            }
            let seen = try await withNodeRuntime(mounts: [Mount(host: host, guest: "/data", readOnly: false)]) { runtime in
                try await runtime.mountJSON(
                    """
                    const results = [
                      attempt(() => fs.writeFileSync("/data/new.txt", "written by the guest")),
                      attempt(() => fs.mkdirSync("/data/made")),
                      attempt(() => fs.writeFileSync("/data/made/inner.txt", "inner")),
                      attempt(() => fs.appendFileSync("/data/existing.txt", " and after")),
                      attempt(() => fs.renameSync("/data/new.txt", "/data/renamed.txt")),
                    ];
                    const s = fs.statSync("/data/renamed.txt");
                    console.log(JSON.stringify({ results, created: { uid: s.uid, gid: s.gid, process: [process.getuid(), process.getgid()], mode: s.mode & 0o7777 } }));
                    """, as: Seen.self)
            }
            #expect(seen.results == ["ok", "ok", "ok", "ok", "ok"])
            #expect(seen.created.uid == 1000 && seen.created.gid == 1000 && seen.created.process == [1000, 1000], "\(seen.created)")

            #expect(HostFiles.read(host + "/renamed.txt") == "written by the guest")
            #expect(HostFiles.read(host + "/made/inner.txt") == "inner")
            #expect(HostFiles.read(host + "/existing.txt") == "before and after")
            for path in ["/renamed.txt", "/made", "/made/inner.txt", "/existing.txt"] {
                let ownership = try HostFiles.ownership(host + path)
                #expect(ownership.owner == owner.uid && ownership.group == owner.gid, "\(path) is \(ownership) on the host")
            }
            // The mount's root and the file that was there keep their owners and modes.
            #expect(try HostFiles.ownership(host) == MountOwnership(owner: owner.uid, group: owner.gid, mode: 0o700))
            #expect(try HostFiles.ownership(host + "/existing.txt") == MountOwnership(owner: owner.uid, group: owner.gid, mode: 0o600))
        }
    }

    /// Owners a read-write source may not have: root's uid or gid would make
    /// the guest root's stand-in on the host.
    static let rootOwners = [HostOwner(uid: 0, gid: 0), HostOwner(uid: 0, gid: 4242), HostOwner(uid: 4242, gid: 0)]

    @Test("a read-write mount or workspace of a directory with root's uid or gid is refused, naming it", arguments: rootOwners)
    func rootOwnedReadWriteRefused(owner: HostOwner) async throws {
        try await withHostDirectory(owner: owner.uid, group: owner.gid, mode: 0o755) { host in
            await expectError(.invalidArgument, mentioning: host, "read-write mount of \(owner)") {
                try await NodeRuntime.create(mounts: [Mount(host: host, guest: "/data", readOnly: false)])
            }
            await expectError(.invalidArgument, mentioning: host, "read-write workspace of \(owner)") {
                try await NodeRuntime.create(workspace: Workspace(host: host, mode: .readWrite))
            }
            // Read-only, and as an overlay workspace, the same directory is fine.
            struct Seen: Decodable, Equatable {
                var listing: [String]
                var write: String
            }
            let seen = try await withNodeRuntime(mounts: [Mount(host: host, guest: "/data")], workspace: Workspace(host: host)) { runtime in
                try await runtime.mountJSON(
                    #"console.log(JSON.stringify({ listing: fs.readdirSync("/data"), write: attempt(() => fs.writeFileSync("/workspace/x", "x")) }));"#,
                    as: Seen.self)
            }
            #expect(seen == Seen(listing: [], write: "ok"))
            #expect(try HostFiles.ownership(host) == MountOwnership(owner: owner.uid, group: owner.gid, mode: 0o755))
            #expect(HostFiles.listing(host).isEmpty)
        }
    }

    @Test("a file written by one sandbox is reopened read-write (r+) by a later one, SQLite-style")
    func reopenInLaterSandbox() async throws {
        try await withPrivateHostDirectory { host in
            let mounts = [Mount(host: host, guest: "/data", readOnly: false)]
            let first = try await withNodeRuntime(mounts: mounts) { runtime in
                try await runtime.mountJSON(
                    """
                    const fd = fs.openSync("/data/app.db", "w", 0o644);
                    fs.writeSync(fd, "v1:page-one|page-two");
                    fs.fsyncSync(fd);
                    fs.closeSync(fd);
                    console.log(JSON.stringify(fs.readFileSync("/data/app.db", "utf8")));
                    """, as: String.self)
            }
            #expect(first == "v1:page-one|page-two")

            struct Second: Decodable, Equatable {
                var open: String
                var content: String
                var journal: String
            }
            let second = try await withNodeRuntime(mounts: mounts) { runtime in
                try await runtime.mountJSON(
                    """
                    let content = "", journal = "";
                    const open = attempt(() => {
                      const fd = fs.openSync("/data/app.db", "r+");
                      // A rollback journal beside the database, as SQLite keeps one during a write.
                      fs.writeFileSync("/data/app.db-journal", "v1:page-one");
                      fs.writeSync(fd, "v2", 0);
                      fs.writeSync(fd, "page-TWO", 12);
                      fs.fsyncSync(fd);
                      fs.closeSync(fd);
                      journal = attempt(() => fs.unlinkSync("/data/app.db-journal"));
                      content = fs.readFileSync("/data/app.db", "utf8");
                    });
                    console.log(JSON.stringify({ open, content, journal }));
                    """, as: Second.self)
            }
            #expect(second == Second(open: "ok", content: "v2:page-one|page-TWO", journal: "ok"))
            #expect(HostFiles.read(host + "/app.db") == "v2:page-one|page-TWO")
            #expect(HostFiles.listing(host) == ["app.db"])
            let ownership = try HostFiles.ownership(host + "/app.db")
            #expect(ownership.owner == MountIDs.owner && ownership.group == MountIDs.group, "\(ownership)")
        }
    }

    @Test("two sandboxes alive at the same time write the same read-write mount, each as the directory's owner")
    func twoLiveSandboxesShareMount() async throws {
        try await withPrivateHostDirectory { host in
            let mounts = [Mount(host: host, guest: "/shared", readOnly: false)]
            try await withNodeRuntime(mounts: mounts) { first in
                try await withNodeRuntime(mounts: mounts) { second in
                    let wrote = try await first.mountJSON(
                        #"console.log(JSON.stringify(attempt(() => fs.writeFileSync("/shared/log.txt", "first\n"))));"#, as: String.self)
                    #expect(wrote == "ok")
                    let appended = try await second.mountJSON(
                        """
                        console.log(JSON.stringify(attempt(() => {
                          const fd = fs.openSync("/shared/log.txt", "r+");
                          fs.writeSync(fd, "second\\n", fs.fstatSync(fd).size);
                          fs.closeSync(fd);
                        })));
                        """, as: String.self)
                    #expect(appended == "ok")
                    let read = try await first.mountJSON(
                        #"console.log(JSON.stringify(fs.readFileSync("/shared/log.txt", "utf8")));"#, as: String.self)
                    #expect(read == "first\nsecond\n")
                }
            }
            let ownership = try HostFiles.ownership(host + "/log.txt")
            #expect(ownership.owner == MountIDs.owner && ownership.group == MountIDs.group, "\(ownership)")
        }
    }

    @Test("eight sandboxes with idmapped mounts created at the same time all start and write as the directory's owner")
    func concurrentCreates() async throws {
        try await withPrivateHostDirectory { host in
            try HostFiles.makeDirectory(host + "/ro", owner: MountIDs.owner, group: MountIDs.group, mode: 0o700)
            let mounts = [Mount(host: host, guest: "/data", readOnly: false), Mount(host: host + "/ro", guest: "/srv/ro")]
            let count = 8
            // Not `finishes(within:)`: a deadlock in create blocks threads of
            // Swift's own pool, so only a Dispatch timer can still act.
            let watchdog = MountHelperWatchdog(after: .seconds(30))
            await withTaskGroup(of: Void.self) { group in
                for index in 0..<count {
                    group.addTask {
                        do {
                            let result = try await withNodeRuntime(mounts: mounts) { runtime in
                                try await runtime.exec(#"require("fs").writeFileSync("/data/from-\#(index)", "\#(index)");"#)
                            }
                            #expect(result.termination == .exited(0), "sandbox \(index): \(result.stderrText)")
                        } catch {
                            Issue.record("sandbox \(index): \(error)")
                        }
                    }
                }
            }
            let killed = watchdog.stop()
            #expect(
                killed.isEmpty,
                "the concurrent creates deadlocked: after 30 s, \(killed.count) namespace helpers of this process were still waiting and were killed to end the test: \(killed)")
            #expect(HostFiles.listing(host) == ((0..<count).map { "from-\($0)" } + ["ro"]).sorted())
            for index in 0..<count where HostFiles.exists(host + "/from-\(index)") {
                let ownership = try HostFiles.ownership(host + "/from-\(index)")
                #expect(ownership.owner == MountIDs.owner && ownership.group == MountIDs.group, "from-\(index) is \(ownership)")
            }
        }
    }

    @Test("a private node_modules (0700, files 0600, another uid) resolves by require")
    func privateNodeModules() async throws {
        try await withPrivateHostDirectory { modules in
            let id = (uid: MountIDs.owner, gid: MountIDs.group)
            try HostFiles.makeDirectory(modules + "/tiny-pkg", owner: id.uid, group: id.gid, mode: 0o700)
            try HostFiles.write(
                modules + "/tiny-pkg/package.json", #"{ "name": "tiny-pkg", "main": "index.js" }"#, owner: id.uid, group: id.gid, mode: 0o600)
            try HostFiles.write(
                modules + "/tiny-pkg/index.js", #"module.exports = () => "tiny says hi";"#, owner: id.uid, group: id.gid, mode: 0o600)
            let result = try await withNodeRuntime(nodeModules: modules) { runtime in
                try await runtime.exec(#"console.log(require("tiny-pkg")());"#)
            }
            #expect(result.termination == .exited(0), "stderr: \(result.stderrText)")
            #expect(result.stdoutText == "tiny says hi\n")
            #expect(try HostFiles.ownership(modules) == MountOwnership(owner: id.uid, group: id.gid, mode: 0o700))
        }
    }
}
