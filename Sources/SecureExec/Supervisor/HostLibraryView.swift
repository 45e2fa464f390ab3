#if canImport(Glibc)
import Glibc
#endif

/// The host's shared-library directories, shown to the guest read-only at
/// their host paths, so a native addon finds the system libraries it links
/// to (`libz.so.1`, `libsqlite3.so.0`) whether it was in the workspace at
/// create or was built or installed in the sandbox later. Part of the
/// `.standard` and `.minimal` roots (`GuestRoot.assemble`): `.host` shows the
/// host's `/usr` and `/lib*` whole, and a `.directory` root has its own.
///
/// Which directories: those the loader searches (ld.so.conf's, then its
/// compiled-in ones), each bound whole (read-only, nosuid, nodev, not
/// idmapped), except the general trees `/lib`, `/usr/lib` and
/// `/usr/local/lib`, which hold far more than libraries (setuid helpers such
/// as `ssh-keysign`, npm, python, systemd). A directory is shown only if it
/// is the administrator's: its real path lies under `/usr`, `/opt` or a
/// top-level `/lib*`, is owned by root, writable by no one else and readable
/// by everyone (so the guest learns nothing an unprivileged host user could
/// not read). A runtime file the view already shows (node's libraries) is
/// not bound again; where the view would show a different file at a runtime
/// file's path, that directory is left out instead.
///
/// Blocking (stat, realpath, readlink of a few paths); runs in the launcher's
/// blocking step.
enum HostLibraryView {
    /// Loader directories never shown whole: each holds much more than libraries.
    static let generalTrees = ["/lib", "/usr/lib", "/usr/local/lib"]

    /// `runtime` (node, its libraries, the loader cache, device nodes) with
    /// the library view added and the runtime files it shows taken out.
    static func merged(into runtime: [HostMount]) -> [HostMount] {
        var view = directories(SharedLibraryResolver.loaderDirectories())
        // Dropping one directory can change where another one's symlinks
        // lead (/lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/...), so
        // check again until nothing changes.
        while true {
            let consistent = view.filter { directory in
                runtime.filter { GuestPath.isInside($0.guestPath, area: directory.guestPath) }
                    .allSatisfy { hostFile(atGuestPath: $0.guestPath, view: view) == $0.hostPath }
            }
            if consistent.count == view.count { break }
            view = consistent
        }
        let outside = runtime.filter { file in !view.contains { GuestPath.isInside(file.guestPath, area: $0.guestPath) } }
        return outside + view
    }

    /// The directories of `candidates` (loader directories, in search order)
    /// that the view shows, each bound at its path as written from its real path.
    static func directories(_ candidates: [String]) -> [HostMount] {
        var chosen: [HostMount] = []
        for directory in candidates where isShown(directory) {
            guard let real = realPath(directory), isShown(real), isAdministrators(real) else { continue }
            // A directory inside one already shown is shown by it.
            if chosen.contains(where: { GuestPath.isInside(directory, area: $0.guestPath) }) { continue }
            chosen.removeAll { GuestPath.isInside($0.guestPath, area: directory) }
            chosen.append(HostMount(hostPath: real, guestPath: directory, attributes: .runtime))
        }
        return chosen
    }

    /// Not the root, not a general tree or above one, and a path init can
    /// make mount points for (absolute, normalized).
    private static func isShown(_ path: String) -> Bool {
        path != "/" && GuestPath.isNormalizedAbsolute(path)
            && !generalTrees.contains { GuestPath.isInside($0, area: path) }
    }

    /// A directory under /usr, /opt or a top-level /lib*, owned by root,
    /// writable by no one else, readable and searchable by everyone.
    private static func isAdministrators(_ real: String) -> Bool {
        let top = real.split(separator: "/").first ?? ""
        guard real.hasPrefix("/usr/") || real.hasPrefix("/opt/") || top.hasPrefix("lib") else { return false }
        var info = stat()
        guard stat(real, &info) == 0, info.st_mode & S_IFMT == S_IFDIR, info.st_uid == 0 else { return false }
        return info.st_mode & (S_IWGRP | S_IWOTH) == 0 && info.st_mode & (S_IROTH | S_IXOTH) == S_IROTH | S_IXOTH
    }

    /// The host file the guest reaches at `path` through `view` alone
    /// (symlinks resolved as the guest's kernel would, in the guest's root);
    /// nil when the path leaves the view or does not exist.
    static func hostFile(atGuestPath path: String, view: [HostMount], depth: Int = 0) -> String? {
        guard depth < 40,
            let directory = view.filter({ GuestPath.isInside(path, area: $0.guestPath) })
                .max(by: { $0.guestPath.count < $1.guestPath.count })
        else { return nil }
        var host = directory.hostPath
        var guest = directory.guestPath
        let rest = path.dropFirst(directory.guestPath.count).split(separator: "/")
        for (index, name) in rest.enumerated() {
            let next = host + "/" + name
            var info = stat()
            guard lstat(next, &info) == 0 else { return nil }
            if info.st_mode & S_IFMT == S_IFLNK {
                guard let target = readLink(next) else { return nil }
                let remaining = rest[(index + 1)...].map { "/" + $0 }.joined()
                let resolved = (target.hasPrefix("/") ? target : guest + "/" + target) + remaining
                return hostFile(atGuestPath: GuestPath.lexicallyNormalized(resolved), view: view, depth: depth + 1)
            }
            host = next
            guest += "/" + name
        }
        return host
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    private static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
