import Foundation
import SecureExec
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
@Suite("Mounts: closed to escapes", .enabled(if: MountGate.enabled), .timeLimit(.minutes(1)))
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
            try MountHostFiles.makeDirectory(directory + "/real")
            try MountHostFiles.makeDirectory(directory + "/real/dir")
            try MountHostFiles.write(directory + "/real/dir/inside.txt", "inside")
            try MountHostFiles.write(directory + "/real/file.txt", "file")
            switch self {
            case .lastComponentToDirectory:
                try MountHostFiles.symlink(directory + "/link", to: directory + "/real")
                return directory + "/link"
            case .lastComponentToRoot:
                try MountHostFiles.symlink(directory + "/link", to: "/")
                return directory + "/link"
            case .throughSymlinkedParent:
                try MountHostFiles.symlink(directory + "/link", to: directory + "/real")
                return directory + "/link/dir"
            case .throughSymlinkToRoot:
                try MountHostFiles.symlink(directory + "/link", to: "/")
                return directory + "/link/etc"
            case .throughRelativeSymlink:
                try MountHostFiles.symlink(directory + "/link", to: "real")
                return directory + "/link/dir"
            case .lastComponentToFile:
                try MountHostFiles.symlink(directory + "/file-link", to: directory + "/real/file.txt")
                return directory + "/file-link"
            }
        }
    }

    @Test("a mount whose host path is or passes through a symlink is refused, naming the path", arguments: SymlinkLayout.allCases, [true, false])
    func symlinkedHostPathRefused(layout: SymlinkLayout, readOnly: Bool) async throws {
        try await withMountHostDirectory { directory in
            let host = try layout.build(in: directory)
            let guest = layout == .lastComponentToFile ? "/data/file.txt" : "/data"
            await expectRefusedAtCreate("\(layout)", mentioning: host) {
                try await NodeRuntime.create(mounts: [Mount(host: host, guest: guest, readOnly: readOnly)])
            }
        }
    }

    @Test("the same directory given by its real path mounts (the control for the symlink refusals)")
    func realPathMounts() async throws {
        try await withMountHostDirectory { directory in
            _ = try SymlinkLayout.throughSymlinkedParent.build(in: directory)
            let text = try await withNodeRuntime(mounts: [Mount(host: directory + "/real/dir", guest: "/data")]) { runtime in
                try await runtime.mountJSON(#"console.log(JSON.stringify(fs.readFileSync("/data/inside.txt", "utf8")));"#, as: String.self)
            }
            #expect(text == "inside")
        }
    }

    @Test("a project whose node_modules is a symlink to / is refused as nodeModules, naming the path")
    func nodeModulesSymlinkToRootRefused() async throws {
        try await withMountHostDirectory { project in
            try MountHostFiles.symlink(project + "/node_modules", to: "/")
            await expectRefusedAtCreate(mentioning: project + "/node_modules") {
                try await NodeRuntime.create(nodeModules: project + "/node_modules")
            }
        }
    }

    @Test("a nodeModules path through a symlinked directory is refused, naming the path")
    func nodeModulesThroughSymlinkRefused() async throws {
        try await withMountHostDirectory { directory in
            try MountHostFiles.makeDirectory(directory + "/real")
            try MountHostFiles.makeDirectory(directory + "/real/node_modules")
            try MountHostFiles.symlink(directory + "/project", to: directory + "/real")
            await expectRefusedAtCreate(mentioning: directory + "/project/node_modules") {
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
            try MountHostFiles.makeDirectory(directory + "/sub", owner: MountIDs.owner, group: MountIDs.group)
            try MountHostFiles.write(directory + "/sub/data.txt", "project data", owner: MountIDs.owner, group: MountIDs.group)

            let planted = try await withNodeRuntime(mounts: [Mount(host: directory, guest: "/data", readOnly: false)]) { runtime in
                try await runtime.mountJSON(Self.plantRootLink, as: String.self)
            }
            #expect(planted == "/")
            // The control: the host directory now really holds the guest's symlink to /.
            try #require(MountHostFiles.isSymlink(directory + "/sub"), "the guest's symlink did not reach the host")

            await expectRefusedAtCreate("Mount(host: <dir>/sub)", mentioning: directory + "/sub") {
                try await NodeRuntime.create(mounts: [Mount(host: directory + "/sub", guest: "/data")])
            }
            await expectRefusedAtCreate("Mount(host: <dir>/sub/etc)", mentioning: directory + "/sub/etc") {
                try await NodeRuntime.create(mounts: [Mount(host: directory + "/sub/etc", guest: "/data", readOnly: false)])
            }
            await expectRefusedAtCreate("nodeModules: <dir>/sub", mentioning: directory + "/sub") {
                try await NodeRuntime.create(nodeModules: directory + "/sub")
            }
        }
    }

    @Test("a symlink to / planted as node_modules by one sandbox is refused as the next sandbox's nodeModules")
    func plantedNodeModulesSymlink() async throws {
        try await withPrivateHostDirectory { project in
            try MountHostFiles.makeDirectory(project + "/node_modules", owner: MountIDs.owner, group: MountIDs.group)
            let planted = try await withNodeRuntime(mounts: [Mount(host: project, guest: "/data", readOnly: false)]) { runtime in
                try await runtime.mountJSON(
                    """
                    fs.rmSync("/data/node_modules", { recursive: true, force: true });
                    fs.symlinkSync("/", "/data/node_modules");
                    console.log(JSON.stringify(fs.readlinkSync("/data/node_modules")));
                    """, as: String.self)
            }
            #expect(planted == "/")
            try #require(MountHostFiles.isSymlink(project + "/node_modules"), "the guest's symlink did not reach the host")
            await expectRefusedAtCreate(mentioning: project + "/node_modules") {
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
        try await withMountHostDirectory { secretDirectory in
            let secretPath = secretDirectory + "/secret"
            try MountHostFiles.write(secretPath, "host secret", mode: 0o644)
            try await withPrivateHostDirectory { directory in
                let seen = try await withNodeRuntime(mounts: [Mount(host: directory, guest: "/data", readOnly: false)]) { runtime in
                    try await runtime.mountJSON(
                        """
                        const secret = \(escapeJS(secretPath));
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
                #expect(MountHostFiles.isSymlink(directory + "/escape"))
            }
            #expect(MountHostFiles.read(secretPath) == "host secret")
        }
    }

    @Test("the host's file API does not follow a symlink a guest planted in a read-write mount")
    func fileAPIDoesNotFollowGuestSymlink() async throws {
        try await withMountHostDirectory { outside in
            try MountHostFiles.write(outside + "/secret", "host secret", mode: 0o644)
            try await withPrivateHostDirectory { directory in
                try await withNodeRuntime(mounts: [Mount(host: directory, guest: "/data", readOnly: false)]) { runtime in
                    _ = try await runtime.mountJSON(
                        #"fs.symlinkSync("/", "/data/escape"); fs.symlinkSync(\#(escapeJS(outside)), "/data/outside"); console.log("[]");"#,
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
            #expect(MountHostFiles.listing(outside) == ["secret"], "a write through the guest's symlink reached the host")
            #expect(MountHostFiles.read(outside + "/secret") == "host secret")
        }
    }
}
