import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A host mount is a door into the host's filesystem; these tests try to push
/// it open. A host path that is a symlink, or passes through one anywhere, is
/// refused at create (naming the path), so no project whose `node_modules` or
/// subdirectory is a symlink to `/` can expose the host's root, even when a
/// guest planted that symlink through an earlier read-write mount. A symlink
/// a guest makes inside a mount resolves inside the sandbox, never on the host.
@Suite("Mounts: closed to escapes", .needsRoot, .timeLimit(.minutes(1)))
struct MountEscapeTests {
    /// Host layouts that put a symlink on the way to the mounted path.
    enum SymlinkLayout: String, CaseIterable, CustomStringConvertible {
        /// `<dir>/link -> <dir>/real` (a directory), mounted as `<dir>/link`.
        case lastComponentToDirectory
        /// `<dir>/link -> /`, mounted as `<dir>/link`.
        case lastComponentToRoot
        /// `<dir>/link -> <dir>/real`, mounted as `<dir>/link/dir`.
        case throughSymlinkedParent
        /// `<dir>/link -> /`, mounted as `<dir>/link/etc`.
        case throughSymlinkToRoot
        /// `<dir>/link -> real` (relative), mounted as `<dir>/link/dir`.
        case throughRelativeSymlink
        /// `<dir>/file-link -> <dir>/real/file.txt`, mounted as `<dir>/file-link` (a file mount).
        case lastComponentToFile

        var description: String { rawValue }

        /// Builds the layout in `directory` and returns the host path to mount.
        func build(in directory: String) throws -> String {
            try HostFiles.makeDirectory(directory + "/real")
            try HostFiles.makeDirectory(directory + "/real/dir")
            try HostFiles.write(directory + "/real/dir/inside.txt", "inside")
            try HostFiles.write(directory + "/real/file.txt", "file")
            switch self {
            case .lastComponentToDirectory:
                try HostFiles.symlink(directory + "/link", to: directory + "/real")
                return directory + "/link"
            case .lastComponentToRoot:
                try HostFiles.symlink(directory + "/link", to: "/")
                return directory + "/link"
            case .throughSymlinkedParent:
                try HostFiles.symlink(directory + "/link", to: directory + "/real")
                return directory + "/link/dir"
            case .throughSymlinkToRoot:
                try HostFiles.symlink(directory + "/link", to: "/")
                return directory + "/link/etc"
            case .throughRelativeSymlink:
                try HostFiles.symlink(directory + "/link", to: "real")
                return directory + "/link/dir"
            case .lastComponentToFile:
                try HostFiles.symlink(directory + "/file-link", to: directory + "/real/file.txt")
                return directory + "/file-link"
            }
        }
    }

    @Test("a mount whose host path is or passes through a symlink is refused, naming the path", arguments: SymlinkLayout.allCases, [true, false])
    func symlinkedHostPathRefused(layout: SymlinkLayout, readOnly: Bool) async throws {
        try await withHostDirectory { directory in
            let host = try layout.build(in: directory)
            let guest = layout == .lastComponentToFile ? "/data/file.txt" : "/data"
            await expectError(.invalidArgument, mentioning: host, "\(layout)") {
                try await NodeRuntime.create(mounts: [Mount(host: host, guest: guest, readOnly: readOnly)])
            }
        }
    }

    @Test("the same directory given by its real path mounts (the control for the symlink refusals)")
    func realPathMounts() async throws {
        try await withHostDirectory { directory in
            _ = try SymlinkLayout.throughSymlinkedParent.build(in: directory)
            let text = try await withNodeRuntime(mounts: [Mount(host: directory + "/real/dir", guest: "/data")]) { runtime in
                try await runtime.mountJSON(#"console.log(JSON.stringify(fs.readFileSync("/data/inside.txt", "utf8")));"#, as: String.self)
            }
            #expect(text == "inside")
        }
    }

    @Test("a project whose node_modules is a symlink to / is refused as nodeModules, naming the path")
    func nodeModulesSymlinkToRootRefused() async throws {
        try await withHostDirectory { project in
            try HostFiles.symlink(project + "/node_modules", to: "/")
            await expectError(.invalidArgument, mentioning: project + "/node_modules") {
                try await NodeRuntime.create(nodeModules: project + "/node_modules")
            }
        }
    }

    @Test("a nodeModules path through a symlinked directory is refused, naming the path")
    func nodeModulesThroughSymlinkRefused() async throws {
        try await withHostDirectory { directory in
            try HostFiles.makeDirectory(directory + "/real")
            try HostFiles.makeDirectory(directory + "/real/node_modules")
            try HostFiles.symlink(directory + "/project", to: directory + "/real")
            await expectError(.invalidArgument, mentioning: directory + "/project/node_modules") {
                try await NodeRuntime.create(nodeModules: directory + "/project/node_modules")
            }
        }
    }

    /// Replaces the directory `/data/sub` with a symlink to `/`.
    static let plantRootLink = """
        fs.rmSync("/data/sub", { recursive: true, force: true });
        fs.symlinkSync("/", "/data/sub");
        console.log(JSON.stringify(fs.readlinkSync("/data/sub")));
        """

    @Test("a symlink to / planted by one sandbox in a read-write mount is refused when a later sandbox mounts through it")
    func plantedSymlinkThenRemount() async throws {
        try await withPrivateHostDirectory { directory in
            try HostFiles.makeDirectory(directory + "/sub", owner: MountIDs.owner, group: MountIDs.group)
            try HostFiles.write(directory + "/sub/data.txt", "project data", owner: MountIDs.owner, group: MountIDs.group)

            let planted = try await withNodeRuntime(mounts: [Mount(host: directory, guest: "/data", readOnly: false)]) { runtime in
                try await runtime.mountJSON(Self.plantRootLink, as: String.self)
            }
            #expect(planted == "/")
            // The control: the host directory now really holds the guest's symlink to /.
            try #require(HostFiles.isSymlink(directory + "/sub"), "the guest's symlink did not reach the host")

            await expectError(.invalidArgument, mentioning: directory + "/sub", "Mount(host: <dir>/sub)") {
                try await NodeRuntime.create(mounts: [Mount(host: directory + "/sub", guest: "/data")])
            }
            await expectError(.invalidArgument, mentioning: directory + "/sub/etc", "Mount(host: <dir>/sub/etc)") {
                try await NodeRuntime.create(mounts: [Mount(host: directory + "/sub/etc", guest: "/data", readOnly: false)])
            }
            await expectError(.invalidArgument, mentioning: directory + "/sub", "nodeModules: <dir>/sub") {
                try await NodeRuntime.create(nodeModules: directory + "/sub")
            }
        }
    }

    @Test("a symlink to / planted as node_modules by one sandbox is refused as the next sandbox's nodeModules")
    func plantedNodeModulesSymlink() async throws {
        try await withPrivateHostDirectory { project in
            try HostFiles.makeDirectory(project + "/node_modules", owner: MountIDs.owner, group: MountIDs.group)
            let planted = try await withNodeRuntime(mounts: [Mount(host: project, guest: "/data", readOnly: false)]) { runtime in
                try await runtime.mountJSON(
                    """
                    fs.rmSync("/data/node_modules", { recursive: true, force: true });
                    fs.symlinkSync("/", "/data/node_modules");
                    console.log(JSON.stringify(fs.readlinkSync("/data/node_modules")));
                    """, as: String.self)
            }
            #expect(planted == "/")
            try #require(HostFiles.isSymlink(project + "/node_modules"), "the guest's symlink did not reach the host")
            await expectError(.invalidArgument, mentioning: project + "/node_modules") {
                try await NodeRuntime.create(nodeModules: project + "/node_modules")
            }
        }
    }

    struct ThroughLinks: Decodable {
        /// What reading the host secret's path through each link gave (an error code, or "CONTENT <text>").
        var secret: [String: String]
        /// The guest's /etc/hostname read through the link to /.
        var hostname: String
        /// Whether the link to / lists the same entries as the guest's own /.
        var sameRoot: Bool
    }

    @Test("a symlink a guest makes in a read-write mount resolves inside the sandbox, never to host files")
    func guestSymlinkResolvesInGuest() async throws {
        try await withHostDirectory { secretDirectory in
            let secretPath = secretDirectory + "/secret"
            try HostFiles.write(secretPath, "host secret", mode: 0o644)
            try await withPrivateHostDirectory { directory in
                let seen = try await withNodeRuntime(mounts: [Mount(host: directory, guest: "/data", readOnly: false)]) { runtime in
                    try await runtime.mountJSON(
                        """
                        const secret = \(GuestPrograms.jsString(secretPath));
                        const read = (p) => attempt(() => "CONTENT " + fs.readFileSync(p, "utf8"));
                        fs.symlinkSync("/", "/data/escape");
                        fs.symlinkSync(secret, "/data/direct");
                        fs.symlinkSync("../../../../../../../../.." + secret, "/data/climb");
                        fs.symlinkSync(secret.slice(1), "/data/relative");
                        console.log(JSON.stringify({
                          secret: {
                            escape: read("/data/escape" + secret),
                            direct: read("/data/direct"),
                            climb: read("/data/climb"),
                            relative: read("/data/relative"),
                            dotdot: read("/data/../../../.." + secret),
                          },
                          hostname: fs.readFileSync("/data/escape/etc/hostname", "utf8"),
                          sameRoot: JSON.stringify(fs.readdirSync("/data/escape").sort()) === JSON.stringify(fs.readdirSync("/").sort()),
                        }));
                        """, as: ThroughLinks.self)
                }
                #expect(seen.secret.count == 5)
                for (link, outcome) in seen.secret {
                    #expect(outcome == "ENOENT", "reading the host's secret through \(link) gave \(outcome)")
                }
                #expect(seen.hostname == "sandbox\n")
                #expect(seen.sameRoot)
                // The links are on the host now, as plain symlinks (the cleanup unlinks them without following).
                #expect(HostFiles.isSymlink(directory + "/escape"))
            }
            #expect(HostFiles.read(secretPath) == "host secret")
        }
    }

    @Test("the host's file API does not follow a symlink a guest planted in a read-write mount")
    func fileAPIDoesNotFollowGuestSymlink() async throws {
        try await withHostDirectory { outside in
            try HostFiles.write(outside + "/secret", "host secret", mode: 0o644)
            try await withPrivateHostDirectory { directory in
                try await withNodeRuntime(mounts: [Mount(host: directory, guest: "/data", readOnly: false)]) { runtime in
                    _ = try await runtime.mountJSON(
                        #"fs.symlinkSync("/", "/data/escape"); fs.symlinkSync(\#(GuestPrograms.jsString(outside)), "/data/outside"); console.log("[]");"#,
                        as: [String].self)
                    for path in ["/data/escape" + outside + "/secret", "/data/outside/secret"] {
                        do {
                            let bytes = try await runtime.readFile(path)
                            #expect(String(decoding: bytes, as: UTF8.self) != "host secret", "readFile(\(path)) read the host's file")
                        } catch {
                            // Refused: what must happen (or the guest's own root has no such file).
                        }
                        do {
                            try await runtime.writeFile(path.replacingOccurrences(of: "/secret", with: "/planted"), text: "planted")
                        } catch {
                            // Refused.
                        }
                    }
                }
            }
            #expect(HostFiles.listing(outside) == ["secret"], "a write through the guest's symlink reached the host")
            #expect(HostFiles.read(outside + "/secret") == "host secret")
        }
    }
}
