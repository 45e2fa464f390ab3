import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Runs `body` with a fresh host directory made by `mkdtemp` under /tmp,
/// owned by `owner`:`group` (this process's when nil) with `mode`, and
/// removes it with everything in it afterwards, whether `body` returns or
/// throws, without following any symlink inside it (a guest may have planted
/// one to `/`).
@discardableResult
public func withHostDirectory<Result>(
    owner: uid_t? = nil, group: gid_t? = nil, mode: mode_t = 0o755, _ body: (String) async throws -> Result
) async throws -> Result {
    var template = Array("/tmp/secure-exec-test-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw HostCallError(step: "mkdtemp", errno: errno) }
    let path = String(cString: made)
    defer { HostFiles.removeTree(path) }
    if owner != nil || group != nil {
        guard chown(path, owner ?? getuid(), group ?? getgid()) == 0 else { throw HostCallError(step: "chown \(path)", errno: errno) }
    }
    guard chmod(path, mode) == 0 else { throw HostCallError(step: "chmod \(path)", errno: errno) }
    return try await body(path)
}

/// Host-side file operations for the directories tests mount or read, none
/// of which follows a symlink at the last component.
public enum HostFiles {
    /// Writes `text` to a new file at `path`, owned by `owner`:`group` with
    /// `mode`; missing parent directories are made (0755, this process's).
    public static func write(_ path: String, _ text: String, owner: uid_t? = nil, group: gid_t? = nil, mode: mode_t = 0o644) throws {
        try makeMissingDirectories((path as NSString).deletingLastPathComponent)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw HostCallError(step: "create \(path)", errno: errno) }
        defer { close(fd) }
        try writeAll(fd, Array(text.utf8), path: path)
        if owner != nil || group != nil {
            guard fchown(fd, owner ?? getuid(), group ?? getgid()) == 0 else { throw HostCallError(step: "chown \(path)", errno: errno) }
        }
        guard fchmod(fd, mode) == 0 else { throw HostCallError(step: "chmod \(path)", errno: errno) }
    }

    /// Replaces the contents of the existing file at `path` in place (same
    /// inode, so a watch on it or on its directory sees a change, not a rename).
    public static func overwrite(_ path: String, _ text: String) throws {
        let fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw HostCallError(step: "open \(path)", errno: errno) }
        defer { close(fd) }
        try writeAll(fd, Array(text.utf8), path: path)
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let count = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw HostCallError(step: "write \(path)", errno: errno) }
            offset += count
        }
    }

    /// Makes the directory `path` (its parent must exist), owned by `owner`:`group` with `mode`.
    public static func makeDirectory(_ path: String, owner: uid_t? = nil, group: gid_t? = nil, mode: mode_t = 0o755) throws {
        guard mkdir(path, mode) == 0 else { throw HostCallError(step: "mkdir \(path)", errno: errno) }
        if owner != nil || group != nil {
            guard lchown(path, owner ?? getuid(), group ?? getgid()) == 0 else { throw HostCallError(step: "chown \(path)", errno: errno) }
        }
        guard chmod(path, mode) == 0 else { throw HostCallError(step: "chmod \(path)", errno: errno) }
    }

    /// Makes `path` and whichever of its parents are missing, mode 0755 (umask does not apply).
    private static func makeMissingDirectories(_ path: String) throws {
        guard !path.isEmpty, !exists(path) else { return }
        try makeMissingDirectories((path as NSString).deletingLastPathComponent)
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else { throw HostCallError(step: "mkdir \(path)", errno: errno) }
        guard chmod(path, 0o755) == 0 else { throw HostCallError(step: "chmod \(path)", errno: errno) }
    }

    /// Makes a symlink at `path` whose text is `target`.
    public static func symlink(_ path: String, to target: String) throws {
        guard Glibc.symlink(target, path) == 0 else { throw HostCallError(step: "symlink \(path) -> \(target)", errno: errno) }
    }

    /// `lstat` of `path` (a symlink is reported as itself, never followed).
    public static func status(_ path: String) throws -> stat {
        var info = stat()
        guard lstat(path, &info) == 0 else { throw HostCallError(step: "lstat \(path)", errno: errno) }
        return info
    }

    /// Whether anything (a dangling symlink included) exists at `path`.
    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    /// Whether `path` is a symlink.
    public static func isSymlink(_ path: String) -> Bool {
        (try? status(path)).map { $0.st_mode & S_IFMT == S_IFLNK } ?? false
    }

    /// The contents of the regular file at `path` as text, or nil when it cannot be read (a symlink is not followed).
    public static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return count == 0 ? String(decoding: bytes, as: UTF8.self) : nil }
            bytes += chunk[..<count]
        }
    }

    /// The names in the directory `path`, sorted, leaving out the files the
    /// runtime writes guests' code to (".secure-exec-*").
    public static func listing(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
            .filter { !$0.hasPrefix(".secure-exec-") }.sorted()
    }

    /// Removes `path` and, if it is a real directory, everything below it.
    /// Symlinks are unlinked, never followed: a guest's `escape -> /` in a
    /// read-write mount must not turn the cleanup into `rm -rf /`.
    public static func removeTree(_ path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if info.st_mode & S_IFMT == S_IFDIR {
            // Root may list and remove anything; make sure a 0000 directory a guest left does not stop us.
            _ = chmod(path, 0o700)
            for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
                removeTree(path + "/" + name)
            }
            _ = rmdir(path)
        } else {
            _ = unlink(path)
        }
    }
}
