import CNamespaces

#if canImport(Glibc)
import Glibc
#endif

/// SecureExec's machine-wide state under `/run/secure-exec` (uid slot
/// locks, records of cgroups to reclaim). Root-only: a directory anyone else
/// could write would let them squat slots or forge records, so one that is
/// not owned by root or is group- or world-writable is refused.
enum StateDirectory {
    static let root = "/run/secure-exec"

    /// Opens (O_PATH, usable as openat's directory) `root/name`, creating it 0700 if missing.
    static func open(_ name: String) throws(SecureExecError) -> Int32 {
        SystemCall.close(try openChecked(root))
        return try openChecked(root + "/" + name)
    }

    static func path(_ name: String) -> String { root + "/" + name }

    /// An empty directory, root's and unreadable to others, to bind over
    /// host directories a root must not show.
    static func emptyDirectory() throws(SecureExecError) -> String {
        SystemCall.close(try open("empty"))
        return path("empty")
    }

    private static func openChecked(_ path: String) throws(SecureExecError) -> Int32 {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw SystemCall.failure(.sandboxSetupFailed, "could not create \(path)", step: "state directory")
        }
        let fd = se_open_no_symlinks(path)
        guard fd >= 0 else {
            throw SystemCall.failure(.sandboxSetupFailed, "could not open \(path)", step: "state directory")
        }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_uid == 0, info.st_mode & 0o022 == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
            SystemCall.close(fd)
            throw SecureExecError(
                .unsupportedHost, "\(path) must be a directory owned by root and writable only by root",
                step: "state directory")
        }
        return fd
    }
}
