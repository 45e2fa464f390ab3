import CNamespaces
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A `RootImage` made concrete on this host: the host files init binds
/// read-only into the guest's root, the symlinks it makes there, and, for
/// `.directory`, the base the root is laid over.
///
/// Built on a Dispatch thread by the launcher before anything of the
/// sandbox exists (it reads ELF files and looks at host paths), so a host
/// that lacks a piece fails `create` with nothing to undo.
struct GuestRoot: Sendable {
    /// A symlink init makes in the root (`/bin/sh` -> `busybox`).
    struct Symlink: Sendable, Hashable {
        var path: String
        var target: String
    }

    /// Host files and directories bound read-only (node, its libraries,
    /// busybox, npm, the host's `/usr`...) and the device nodes.
    var binds: [HostMount]
    var symlinks: [Symlink]

    /// Every guest path the image puts in the root, which no caller's mount may cover.
    var guestPaths: [String] { binds.map(\.guestPath) + symlinks.map(\.path) }
    /// `.directory`: the operator's root filesystem, the overlay's base.
    var base: HostMount?

    /// The image's files on this host; the caller's `node` applies to
    /// `.standard` and `.minimal` (the others bring their own).
    ///
    /// - Throws: `.unsupportedHost` naming what the host lacks (busybox,
    ///   npm, node); `.invalidArgument` for a `.directory` that is not a
    ///   usable root or a `node` given with `.host` or `.directory`.
    static func assemble(_ image: RootImage, node explicitNode: String?) throws(SecureExecError) -> GuestRoot {
        switch image {
        // Native addons: node's own roots show the host's library
        // directories read-only (HostLibraryView); .host shows the host's
        // whole /usr already, and a .directory's libraries are its own.
        case .minimal:
            let node = try RuntimeAssets.locateNode(explicitNode)
            return GuestRoot(binds: HostLibraryView.merged(into: try RuntimeBinds.mounts(node: node)), symlinks: [], base: nil)
        case .standard:
            let node = try RuntimeAssets.locateNode(explicitNode)
            var root = try standard(node: node)
            root.binds = HostLibraryView.merged(into: root.binds)
            return root
        case .host:
            try refuseNode(explicitNode, image: ".host", source: "the host's /usr/bin/node")
            return try host()
        case .directory(let path):
            try refuseNode(explicitNode, image: ".directory", source: "the directory's /usr/bin/node")
            try checkDirectory(path)
            return GuestRoot(
                binds: RuntimeBinds.deviceMounts(), symlinks: [],
                base: HostMount(hostPath: path, guestPath: "/", attributes: .runtime))
        }
    }

    private static func refuseNode(_ node: String?, image: String, source: String) throws(SecureExecError) {
        guard let node else { return }
        throw SecureExecError(
            .invalidArgument,
            "node: \(node.debugDescription) cannot be combined with root: \(image), whose node is \(source)",
            step: "root image")
    }

    // MARK: - .standard

    /// The tools `.standard` links to busybox, in `/bin` (the shell's own
    /// name first). Every one is an applet of Debian's busybox-static; a
    /// test checks them against the busybox the guest runs.
    static let busyboxApplets = [
        "sh", "[", "awk", "base64", "basename", "cat", "chmod", "cmp", "cp", "cut", "date", "dd", "diff", "dirname",
        "du", "echo", "egrep", "env", "expr", "false", "fgrep", "find", "grep", "gunzip", "gzip", "head", "hostname",
        "id", "kill", "ln", "ls", "md5sum", "mkdir", "mktemp", "mv", "nproc", "od", "paste", "printf", "ps", "pwd",
        "readlink", "realpath", "rm", "rmdir", "sed", "seq", "sha1sum", "sha256sum", "sleep", "sort", "stat", "tac",
        "tail", "tar", "tee", "test", "timeout", "touch", "tr", "true", "uname", "uniq", "unzip", "wc", "which",
        "whoami", "xargs", "xxd", "yes", "zcat",
    ]

    /// Where busybox is looked for, in order (`SECURE_EXEC_BUSYBOX` first).
    static let busyboxCandidates = ["/usr/bin/busybox", "/bin/busybox", "/usr/sbin/busybox", "/sbin/busybox"]

    /// node's root plus busybox at `/bin/busybox` with its applets, and
    /// npm at the path node's own prefix gives it.
    private static func standard(node: String) throws(SecureExecError) -> GuestRoot {
        var binds = try RuntimeBinds.mounts(node: node)
        var bound = Set(binds.map(\.guestPath))
        let busybox = try locateBusybox()
        // A dynamically linked busybox (Debian's `busybox`) brings its
        // libraries; the static one (`busybox-static`) needs none.
        var files = [RuntimeFile(hostPath: busybox, guestPath: "/bin/busybox")]
        files += try SharedLibraryResolver.runtimeFiles(forExecutable: busybox)
        let npm = try locateNPM(node: node)
        files.append(RuntimeFile(hostPath: npm, guestPath: npmGuestPath))
        for file in files where bound.insert(file.guestPath).inserted {
            binds.append(HostMount(hostPath: realPath(file.hostPath), guestPath: file.guestPath, attributes: .runtime))
        }
        var symlinks = busyboxApplets.map { Symlink(path: "/bin/\($0)", target: "busybox") }
        symlinks.append(Symlink(path: "/usr/bin/env", target: "/bin/busybox"))
        symlinks.append(Symlink(path: "/usr/bin/npm", target: "../lib/node_modules/npm/bin/npm-cli.js"))
        symlinks.append(Symlink(path: "/usr/bin/npx", target: "../lib/node_modules/npm/bin/npx-cli.js"))
        return GuestRoot(binds: binds, symlinks: symlinks, base: nil)
    }

    /// Where npm lives in the guest: where node's prefix puts it, as on the host.
    static let npmGuestPath = "/usr/lib/node_modules/npm"

    /// `SECURE_EXEC_BUSYBOX` when it is set (`.unsupportedHost` naming it
    /// when it names no executable file, never skipped), else the first
    /// executable of `candidates`.
    static func locateBusybox(
        environment: [String: String] = ProcessInfo.processInfo.environment, candidates: [String] = busyboxCandidates
    ) throws(SecureExecError) -> String {
        if let chosen = try RuntimeAssets.chosen(
            "SECURE_EXEC_BUSYBOX", in: environment, executable: true, what: "busybox for the .standard root")
        {
            return chosen
        }
        for candidate in candidates where access(candidate, X_OK) == 0 { return candidate }
        throw SecureExecError(
            .unsupportedHost,
            "the .standard root needs busybox for its /bin/sh and tools, and this host has none (looked for \(candidates.joined(separator: ", "))); install it (`apt-get install busybox-static`), set SECURE_EXEC_BUSYBOX, or create the runtime with root: .minimal",
            step: "locate busybox")
    }

    /// npm as installed with node (NodeSource's package, the official
    /// tarball, nvm): `<prefix>/lib/node_modules/npm` beside `<prefix>/bin/node`.
    static func locateNPM(node: String) throws(SecureExecError) -> String {
        let prefix = ((realPath(node) as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
        let npm = prefix + "/lib/node_modules/npm"
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: npm + "/bin/npm-cli.js"),
            FileManager.default.fileExists(atPath: npm + "/node_modules", isDirectory: &isDirectory), isDirectory.boolValue
        else {
            throw SecureExecError(
                .unsupportedHost,
                "the .standard root needs npm as installed with node, and \(npm) holds none; install Node.js with its own npm (NodeSource's nodejs package or the official tarball), or create the runtime with root: .minimal",
                step: "locate npm")
        }
        return npm
    }

    // MARK: - .host

    /// The host's top-level directories `.host` shows, as the host lays
    /// them out: a directory is bound, a symlink (`/bin -> usr/bin`) made.
    static let hostSystemDirectories = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"]
    /// The host's files in `.host`'s `/etc`; the rest of it is SecureExec's.
    /// Host directories under `.host`'s `/usr` that hold configuration, not programs.
    static let hostHiddenDirectories = ["/usr/etc", "/usr/local/etc"]

    private static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
    }

    static let hostEtcFiles = [
        "ld.so.cache", "alternatives", "ssl/certs", "ssl/openssl.cnf", "protocols", "services", "mime.types",
    ]

    private static func host() throws(SecureExecError) -> GuestRoot {
        guard access(Sandbox.nodePath, X_OK) == 0 else {
            throw SecureExecError(
                .unsupportedHost,
                "the .host root runs the host's \(Sandbox.nodePath), which this host does not have; install node there or use root: .standard",
                step: "root image")
        }
        var binds: [HostMount] = []
        var symlinks: [Symlink] = []
        for name in hostSystemDirectories {
            let path = "/" + name
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            switch info.st_mode & S_IFMT {
            case S_IFLNK:
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: path) else { continue }
                symlinks.append(Symlink(path: path, target: target))
            case S_IFDIR:
                binds.append(HostMount(hostPath: path, guestPath: path, attributes: .runtime))
            default: continue
            }
        }
        for name in hostEtcFiles where FileManager.default.fileExists(atPath: "/etc/" + name) {
            // The administrator's files: their symlinks are resolved here, so the mount follows none.
            binds.append(HostMount(hostPath: realPath("/etc/" + name), guestPath: "/etc/" + name, attributes: .runtime))
        }
        // /usr's own configuration (npm's global npmrc with its tokens, and
        // the like) is host state: an empty, unreadable directory covers it.
        let hidden = hostHiddenDirectories.filter { isDirectory($0) }
        if !hidden.isEmpty {
            let empty = try StateDirectory.emptyDirectory()
            binds += hidden.map { HostMount(hostPath: empty, guestPath: $0, attributes: .runtime) }
        }
        return GuestRoot(binds: binds + RuntimeBinds.deviceMounts(), symlinks: symlinks, base: nil)
    }

    // MARK: - The host's time zone

    /// The host's time zone (`RuntimeBinds.timeZone`) as this root shows it:
    /// the zone `file` to bind and where the guest's `/etc/localtime` links.
    /// The file is not bound where the root already shows that very file at
    /// that path (`.host`, whose `/usr` is the host's). A `.directory` root
    /// keeps its own zone data: its `/etc/localtime` links to the host's
    /// zone when it has that zone's file, and is its own otherwise (nothing
    /// is bound into an operator's tree). Nil when the host has no zone, or
    /// a caller's mount covers the zone file or `/etc/localtime`.
    func timeZone(
        besides callerMounts: [HostMount], hostLink: String = "/etc/localtime"
    ) -> (file: HostMount?, link: String?)? {
        guard let zone = RuntimeBinds.timeZone(hostLink: hostLink, besides: callerMounts),
            !callerMounts.contains(where: { GuestPath.isInside("/etc/localtime", area: $0.guestPath) })
        else { return nil }
        if let base {
            guard let link = zone.link, Self.directory(base.hostPath, holdsFile: link) else { return nil }
            return (nil, link)
        }
        if HostLibraryView.hostFile(atGuestPath: zone.mount.guestPath, view: binds) == zone.mount.hostPath {
            return (nil, zone.link)
        }
        return (zone.mount, zone.link)
    }

    /// Whether the operator's root at `root` has a regular file at the guest
    /// path `path` (symlinks in it resolved within it, as its guest sees them).
    static func directory(_ root: String, holdsFile path: String) -> Bool {
        guard let fd = try? HostMount.openSource(root, role: "root directory") else { return false }
        defer { SystemCall.close(fd) }
        let file = se_open_in_root(fd, String(path.drop { $0 == "/" }))
        guard file >= 0 else { return false }
        defer { SystemCall.close(file) }
        var info = stat()
        return fstat(file, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
    }

    // MARK: - .directory

    /// The operator's root: a directory with no symlink in its path, holding
    /// an executable `/usr/bin/node` (looked up inside it as its guest will).
    private static func checkDirectory(_ path: String) throws(SecureExecError) {
        let fd = try HostMount.openSource(path, role: "root directory")
        defer { SystemCall.close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw SecureExecError(.invalidArgument, "root directory \(path.debugDescription) is not a directory", step: "root image")
        }
        // A prepared image, not the host itself: the host's own root (by any
        // path) or a directory holding SecureExec's state would show the
        // guest everything readable on the host.
        var hostRoot = stat()
        let isHostRoot = stat("/", &hostRoot) == 0 && hostRoot.st_dev == info.st_dev && hostRoot.st_ino == info.st_ino
        let normalized = path.hasSuffix("/") ? path : path + "/"
        guard !isHostRoot, !(StateDirectory.root + "/").hasPrefix(normalized) else {
            throw SecureExecError(
                .invalidArgument,
                "root directory \(path.debugDescription) is the host's own root or holds SecureExec's state; give a prepared root filesystem",
                step: "root image")
        }
        let node = se_open_in_root(fd, String(Sandbox.nodePath.dropFirst()))
        guard node >= 0 else {
            let code = errno
            throw SecureExecError(
                .invalidArgument,
                "root directory \(path.debugDescription) has no \(Sandbox.nodePath) (\(String(cString: strerror(code)))); with root: .directory, node comes from the directory",
                step: "root image", errno: code)
        }
        defer { SystemCall.close(node) }
        guard fstat(node, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_mode & 0o111 != 0 else {
            throw SecureExecError(
                .invalidArgument, "\(Sandbox.nodePath) in root directory \(path.debugDescription) is not an executable file",
                step: "root image")
        }
    }

    private static func realPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

extension RootImage {
    /// Whether the root has `/bin/sh`: nil when only the directory knows.
    var hasShell: Bool? {
        switch self {
        case .standard, .host: true
        case .minimal: false
        case .directory: nil
        }
    }

    /// Every guest's environment before the caller's: PATH, HOME and TMPDIR,
    /// and where the root has npm, a writable cache for it and no update check.
    var guestEnvironment: [String: String] {
        var environment = ["PATH": "/usr/bin:/bin", "HOME": Sandbox.workspace, "TMPDIR": "/tmp"]
        guard self != .minimal else { return environment }
        // A host's or an operator's root may keep tools in /usr/local/bin, as on the host.
        if self != .standard { environment["PATH"] = "/usr/local/bin:/usr/bin:/bin" }
        environment["npm_config_cache"] = "/tmp/.npm"
        environment["npm_config_update_notifier"] = "false"
        // npm's global config is <prefix>/etc/npmrc, where a host keeps
        // registry tokens (`npm login -g`); a file no root has is read instead.
        environment["npm_config_globalconfig"] = "/etc/npmrc"
        return environment
    }

    /// How the README and errors name it.
    var name: String {
        switch self {
        case .standard: ".standard"
        case .minimal: ".minimal"
        case .host: ".host"
        case .directory(let path): ".directory(\(path.debugDescription))"
        }
    }
}
