import Foundation
import TestSupport
import Testing

@testable import SecureExec

#if canImport(Glibc)
import Glibc
#endif

/// Native addons just load: a `.node` file in a project workspace, a mount,
/// or written into the sandbox after create finds the system libraries it
/// links to through the read-only view of the host's library directories,
/// with no flags; a library the host does not have fails with node's own
/// error naming it. The view is read-only, nosuid and nodev, and shows the
/// loader's directories only.
@Suite("Guest system: native addons", .needsRoot, .timeLimit(.minutes(2)))
struct NativeAddonTests {
    @Test("an addon in a project workspace loads the host's libz with no flags, as it does on the host")
    func addonInWorkspace() async throws {
        try await withHostDirectory { project in
            let addon = try await NativeAddon.buildZlibAddon(in: project)
            let onHost = try await NativeAddon.loadOnHost(addon)
            try #require(onHost.error == nil && onHost.zlibPath?.isEmpty == false, "on the host: \(onHost)")
            let inGuest = try await withNodeRuntime(workspace: Workspace(host: project)) { runtime in
                try await NativeAddon.load("/workspace/addon.node", in: runtime)
            }
            #expect(inGuest == onHost)
            let zlibPath = try #require(inGuest.zlibPath)
            #expect(SharedLibraryResolver.loaderDirectories().contains((zlibPath as NSString).deletingLastPathComponent))
        }
    }

    @Test("an addon in a read-only mount loads too")
    func addonInMount() async throws {
        try await withHostDirectory { directory in
            let addon = try await NativeAddon.buildZlibAddon(in: directory)
            let onHost = try await NativeAddon.loadOnHost(addon)
            let inGuest = try await withNodeRuntime(mounts: [Mount(host: directory, guest: "/opt/addons")]) { runtime in
                try await NativeAddon.load("/opt/addons/addon.node", in: runtime)
            }
            #expect(inGuest.error == nil, "\(inGuest)")
            #expect(inGuest == onHost)
        }
    }

    @Test("an addon written into the workspace after create (as an install or a build would) loads")
    func addonWrittenAfterCreate() async throws {
        try await withHostDirectory { build in
            let addon = try await NativeAddon.buildZlibAddon(in: build)
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: addon)))
            let onHost = try await NativeAddon.loadOnHost(addon)
            try await withHostDirectory { project in
                try HostFiles.write(project + "/package.json", #"{ "name": "late" }"#)
                try await withNodeRuntime(workspace: Workspace(host: project)) { runtime in
                    try await runtime.makeDirectory("/workspace/build")
                    try await runtime.writeFile("/workspace/build/addon.node", bytes)
                    let inGuest = try await NativeAddon.load("/workspace/build/addon.node", in: runtime)
                    #expect(inGuest.error == nil, "\(inGuest)")
                    #expect(inGuest == onHost)
                }
            }
        }
    }

    @Test("an addon that bundles its own library beside it ($ORIGIN) loads it from the workspace")
    func addonWithBundledLibrary() async throws {
        try await withHostDirectory { project in
            try HostFiles.makeDirectory(project + "/lib")
            try await NativeAddon.compile(
                NativeAddon.librarySource(function: "secure_exec_bundled"), into: project + "/lib/libsecureexecbundled.so.1",
                flags: ["-Wl,-soname,libsecureexecbundled.so.1"])
            try HostFiles.symlink(project + "/lib/libsecureexecbundled.so", to: "libsecureexecbundled.so.1")
            try await NativeAddon.compile(
                NativeAddon.callerSource(of: "secure_exec_bundled"), into: project + "/addon.node",
                flags: ["-L", project + "/lib", "-lsecureexecbundled", "-Wl,-rpath,$ORIGIN/lib"])
            let inGuest = try await withNodeRuntime(workspace: Workspace(host: project)) { runtime in
                try await NativeAddon.load("/workspace/addon.node", in: runtime)
            }
            #expect(inGuest.error == nil, "\(inGuest)")
            #expect(inGuest.bundled == 42, "\(inGuest)")
        }
    }

    @Test("an addon linked to a library the host does not have fails with node's error naming that library")
    func missingLibraryIsNamed() async throws {
        try await withHostDirectory { scratch in
            // Linked against a library that exists only while the addon is built.
            try await NativeAddon.compile(
                NativeAddon.librarySource(function: "secure_exec_missing"), into: scratch + "/libsecureexecmissing.so",
                flags: ["-Wl,-soname,libsecureexecmissing.so.7"])
            try HostFiles.makeDirectory(scratch + "/project")
            try await NativeAddon.compile(
                NativeAddon.callerSource(of: "secure_exec_missing"), into: scratch + "/project/addon.node",
                flags: ["-L", scratch, "-lsecureexecmissing"])
            let inGuest = try await withNodeRuntime(workspace: Workspace(host: scratch + "/project")) { runtime in
                try await NativeAddon.load("/workspace/addon.node", in: runtime)
            }
            #expect(inGuest.code == "ERR_DLOPEN_FAILED", "\(inGuest)")
            #expect(
                inGuest.error?.contains("libsecureexecmissing.so.7: cannot open shared object file: No such file or directory") == true,
                "\(inGuest)")
        }
    }

    struct ViewReport: Decodable {
        struct Directory: Decodable {
            var directory: String
            var roots: [String]
            var options: [[String]]
            var create: String
            var mkdir: String
            var list: String
        }
        struct Privileged: Decodable {
            var path: String
            var seen: String
            var options: [String]
        }
        struct Absent: Decodable {
            var path: String
            var result: String
        }
        var view: [Directory]
        var privileged: [Privileged]
        var absent: [Absent]
    }

    /// Host paths a guest must never see: setuid helpers and other trees that
    /// live beside the library directories (checked where the host has them).
    static let notLibraries = [
        "/usr/lib/openssh/ssh-keysign", "/usr/lib/dbus-1.0/dbus-daemon-launch-helper", "/usr/lib/polkit-1", "/usr/lib/systemd",
        "/usr/lib/python3", "/usr/lib/gcc", "/usr/local/lib", "/usr/include", "/usr/share/doc", "/etc/ld.so.conf.d", "/root", "/home",
    ]

    @Test("the library view is read-only, nosuid and nodev, and shows the loader's directories and nothing beside them")
    func viewIsReadOnlyAndNarrow() async throws {
        let runtimeFiles = try RuntimeBinds.mounts(node: RuntimeAssets.locate(node: nil).node)
        let view = HostLibraryView.merged(into: runtimeFiles).filter { !runtimeFiles.contains($0) }
        try #require(!view.isEmpty, "this host has no library directory the view would show")
        for directory in view {
            #expect(SharedLibraryResolver.loaderDirectories().contains(directory.guestPath), "\(directory)")
            #expect(!HostLibraryView.generalTrees.contains(directory.guestPath), "\(directory)")
        }
        let privileged = Self.privilegedFiles(in: view)
        let absent = Self.notLibraries.filter(HostFiles.exists)

        let report = try await withNodeRuntime { runtime in
            try await runtime.mountJSON(
                """
                const mounts = fs.readFileSync("/proc/self/mountinfo", "utf8").trim().split("\\n").map((line) => {
                  const fields = line.split(" ");
                  return { root: fields[3], point: fields[4], options: fields[5].split(",") };
                });
                const inside = (path, point) => path === point || path.startsWith(point === "/" ? "/" : point + "/");
                // The mount a path is on: the deepest point above it, the last one stacked there.
                const mountOf = (path) => mounts.filter((m) => inside(path, m.point))
                  .reduce((best, m) => (!best || m.point.length >= best.point.length ? m : best), undefined);
                const view = \(NativeAddon.jsArray(view.map(\.guestPath))).map((directory) => {
                  const here = mounts.filter((m) => m.point === directory);
                  return { directory, roots: here.map((m) => m.root), options: here.map((m) => m.options),
                    create: attempt(() => fs.writeFileSync(directory + "/secure-exec-written", "x")),
                    mkdir: attempt(() => fs.mkdirSync(directory + "/secure-exec-made")),
                    list: attempt(() => { fs.readdirSync(directory); }) };
                });
                const privileged = \(NativeAddon.jsArray(privileged)).map((path) =>
                  ({ path, seen: attempt(() => { fs.statSync(path); }), options: (mountOf(path) || { options: [] }).options }));
                const absent = \(NativeAddon.jsArray(absent)).map((path) => ({ path, result: attempt(() => { fs.lstatSync(path); }) }));
                console.log(JSON.stringify({ view, privileged, absent }));
                """, as: ViewReport.self)
        }

        #expect(report.view.count == view.count)
        for (seen, directory) in zip(report.view, view) {
            #expect(!seen.options.isEmpty, "\(directory.guestPath) is not a mount in the guest")
            for options in seen.options {
                #expect(Set(["ro", "nosuid", "nodev"]).isSubset(of: Set(options)), "\(directory.guestPath): \(options)")
            }
            for root in seen.roots {
                #expect(directory.hostPath.hasSuffix(root), "\(directory.guestPath) shows host \(root), not \(directory.hostPath)")
            }
            #expect(seen.create == "EROFS", "creating a file in \(directory.guestPath): \(seen.create)")
            #expect(seen.mkdir == "EROFS", "mkdir in \(directory.guestPath): \(seen.mkdir)")
            #expect(seen.list == "ok", "listing \(directory.guestPath): \(seen.list)")
        }
        // A setuid or setgid file the host keeps in a library directory
        // (utempter on Debian) is there, but on a nosuid mount: exec ignores
        // the bit, and guests run with no_new_privs anyway.
        #expect(report.privileged.count == privileged.count)
        for file in report.privileged {
            #expect(file.seen == "ok", "\(file.path)")
            #expect(file.options.contains("nosuid"), "\(file.path) is on a mount with \(file.options)")
        }
        #expect(report.absent.count == absent.count)
        for path in report.absent {
            #expect(path.result == "ENOENT", "\(path.path) in the guest: \(path.result)")
        }
    }

    /// Guest paths of the setuid or setgid regular files in `view`, up to three levels down, no symlink followed.
    static func privilegedFiles(in view: [HostMount]) -> [String] {
        var found: [String] = []
        func walk(host: String, guest: String, depth: Int) {
            guard depth < 4 else { return }
            for name in (try? FileManager.default.contentsOfDirectory(atPath: host)) ?? [] {
                guard let info = try? HostFiles.status(host + "/" + name) else { continue }
                switch info.st_mode & S_IFMT {
                case S_IFDIR: walk(host: host + "/" + name, guest: guest + "/" + name, depth: depth + 1)
                case S_IFREG where info.st_mode & (S_ISUID | S_ISGID) != 0: found.append(guest + "/" + name)
                default: break
                }
            }
        }
        for directory in view { walk(host: directory.hostPath, guest: directory.guestPath, depth: 0) }
        return found
    }
}
