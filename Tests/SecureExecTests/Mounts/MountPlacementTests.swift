import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Where a host mount may go in the guest: any absolute, normalized path
/// (`/data`, `/srv/app`...), nested mounts in the order given; but never over
/// the guest's root, its kernel interfaces (`/proc`, `/dev`, `/sys`), the
/// workspace itself (that is `workspace:`), or the runtime's own files (node,
/// its loader and libraries, `ld.so.cache`), which `create` refuses with
/// `.invalidArgument` before any sandbox exists.
@Suite("Mounts: placement anywhere, nested, and refused paths", .needsRoot, .timeLimit(.minutes(1)))
struct MountPlacementTests {
    /// Reads `/<mount>/hello.txt`, tries to write next to it, lists the mount.
    static func probe(_ guest: String) -> String {
        """
        console.log(JSON.stringify({
          read: attempt(() => fs.readFileSync(\(GuestPrograms.jsString(guest + "/hello.txt")), "utf8")),
          write: attempt(() => fs.writeFileSync(\(GuestPrograms.jsString(guest + "/new.txt")), "x")),
          list: fs.readdirSync(\(GuestPrograms.jsString(guest))).sort(),
        }));
        """
    }

    struct Probe: Decodable, Equatable {
        var read: String
        var write: String
        var list: [String]
    }

    @Test(
        "a read-only mount shows the host directory at any guest path",
        arguments: ["/data", "/srv/app/data", "/home/node/project", "/opt/tools", "/var/lib/app", "/workspace/data", "/tmp/data", "/mnt/data"])
    func readOnlyAnywhere(guest: String) async throws {
        try await withHostDirectory { host in
            try HostFiles.write(host + "/hello.txt", "hello from the host")
            let seen = try await withNodeRuntime(mounts: [Mount(host: host, guest: guest)]) { runtime in
                try await runtime.mountJSON(Self.probe(guest), as: Probe.self)
            }
            #expect(seen == Probe(read: "hello from the host", write: "EROFS", list: ["hello.txt"]))
            #expect(HostFiles.listing(host) == ["hello.txt"])
        }
    }

    @Test("a read-write mount at /data takes the guest's writes, and they reach the host directory")
    func readWriteAtData() async throws {
        // Not root's: a read-write source must have an owner of its own (see MountOwnershipTests).
        try await withHostDirectory(owner: MountIDs.owner, group: MountIDs.group) { host in
            try HostFiles.write(host + "/hello.txt", "hello from the host", owner: MountIDs.owner, group: MountIDs.group)
            let seen = try await withNodeRuntime(mounts: [Mount(host: host, guest: "/data", readOnly: false)]) { runtime in
                try await runtime.mountJSON(Self.probe("/data"), as: Probe.self)
            }
            #expect(seen == Probe(read: "hello from the host", write: "ok", list: ["hello.txt", "new.txt"]))
            #expect(HostFiles.read(host + "/new.txt") == "x")
        }
    }

    /// Lists `/data` and `/data/cache` and reads one file of each.
    static let nestedProbe = """
        console.log(JSON.stringify({
          outer: fs.readdirSync("/data").sort(),
          inner: fs.readdirSync("/data/cache").sort(),
          outerFile: attempt(() => fs.readFileSync("/data/outer.txt", "utf8")),
          innerFile: attempt(() => fs.readFileSync("/data/cache/inner.txt", "utf8")),
        }));
        """

    struct Nested: Decodable, Equatable {
        var outer: [String]
        var inner: [String]
        var outerFile: String
        var innerFile: String
    }

    /// Two host directories owned by 4242:4242 (so either may be read-write):
    /// `outer` (outer.txt, and a `cache/` holding only a marker, where the
    /// inner mount goes) and `inner` (inner.txt).
    static func withNestedHostDirectories<Result>(_ body: (_ outer: String, _ inner: String) async throws -> Result) async throws
        -> Result
    {
        let (uid, gid) = (MountIDs.owner, MountIDs.group)
        return try await withHostDirectory(owner: uid, group: gid) { outer in
            try await withHostDirectory(owner: uid, group: gid) { inner in
                try HostFiles.write(outer + "/outer.txt", "outer", owner: uid, group: gid)
                try HostFiles.makeDirectory(outer + "/cache", owner: uid, group: gid)
                try HostFiles.write(outer + "/cache/under-the-mount.txt", "hidden by the inner mount", owner: uid, group: gid)
                try HostFiles.write(inner + "/inner.txt", "inner", owner: uid, group: gid)
                return try await body(outer, inner)
            }
        }
    }

    @Test("nested mounts (/data, then /data/cache) both show, the inner one over the outer's directory")
    func nestedInOrder() async throws {
        try await Self.withNestedHostDirectories { outer, inner in
            let mounts = [Mount(host: outer, guest: "/data"), Mount(host: inner, guest: "/data/cache")]
            let seen = try await withNodeRuntime(mounts: mounts) { try await $0.mountJSON(Self.nestedProbe, as: Nested.self) }
            #expect(seen == Nested(outer: ["cache", "outer.txt"], inner: ["inner.txt"], outerFile: "outer", innerFile: "inner"))
        }
    }

    @Test("mounts apply in the order given: /data after /data/cache covers it")
    func laterMountCoversEarlier() async throws {
        try await Self.withNestedHostDirectories { outer, inner in
            let mounts = [Mount(host: inner, guest: "/data/cache"), Mount(host: outer, guest: "/data")]
            let seen = try await withNodeRuntime(mounts: mounts) { try await $0.mountJSON(Self.nestedProbe, as: Nested.self) }
            #expect(
                seen == Nested(outer: ["cache", "outer.txt"], inner: ["under-the-mount.txt"], outerFile: "outer", innerFile: "ENOENT"))
        }
    }

    @Test("a read-write mount nested in a read-only one is writable, and the read-only one around it stays read-only")
    func readWriteInsideReadOnly() async throws {
        try await Self.withNestedHostDirectories { outer, inner in
            let mounts = [Mount(host: outer, guest: "/data"), Mount(host: inner, guest: "/data/cache", readOnly: false)]
            let seen = try await withNodeRuntime(mounts: mounts) { runtime in
                try await runtime.mountJSON(
                    """
                    console.log(JSON.stringify([
                      attempt(() => fs.writeFileSync("/data/cache/written.txt", "into the inner mount")),
                      attempt(() => fs.writeFileSync("/data/written.txt", "into the outer mount")),
                    ]));
                    """, as: [String].self)
            }
            #expect(seen == ["ok", "EROFS"])
            #expect(HostFiles.read(inner + "/written.txt") == "into the inner mount")
            #expect(HostFiles.listing(outer) == ["cache", "outer.txt"])
            #expect(HostFiles.listing(outer + "/cache") == ["under-the-mount.txt"])
        }
    }

    @Test(
        "a mount over the runtime's own files (node, its loader and libraries, ld.so.cache, and their directories) is refused at create",
        arguments: MountRuntimeFiles.guestPaths(), [true, false])
    func runtimeFilesRefused(guest: String, readOnly: Bool) async throws {
        try await withHostDirectory { host in
            await expectError(.invalidArgument, "\(guest) readOnly=\(readOnly)") {
                try await NodeRuntime.create(mounts: [Mount(host: host, guest: guest, readOnly: readOnly)])
            }
        }
    }

    @Test("the refused runtime paths include the ones named in the issue")
    func runtimePathsListed() {
        let listed = Set(MountRuntimeFiles.guestPaths())
        for path in ["/usr", "/usr/bin", "/usr/bin/node", "/etc", "/etc/ld.so.cache"] {
            #expect(listed.contains(path), "\(path)")
        }
        #expect(listed.contains { $0.contains("libc.so") }, "node's libc: \(listed.sorted())")
        #expect(listed.contains { $0.contains("ld-linux") }, "node's loader: \(listed.sorted())")
    }

    @Test("one refused mount among good ones refuses the whole runtime")
    func oneBadMountRefusesAll() async throws {
        try await withHostDirectory { host in
            let mounts = [
                Mount(host: host, guest: "/data"), Mount(host: host, guest: "/usr/bin", readOnly: false),
                Mount(host: host, guest: "/srv"),
            ]
            await expectError(.invalidArgument) { try await NodeRuntime.create(mounts: mounts) }
        }
    }
}
