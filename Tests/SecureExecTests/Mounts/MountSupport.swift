import Foundation
import Synchronization
import Testing

@testable import SecureExec

#if canImport(Glibc)
import Glibc
#endif

// Helpers for the host-mount suites (Mounts/*.swift): host directories owned
// by any uid, removed without ever following a symlink a guest planted; host
// `stat` readings; guests that answer in one JSON line; the check that
// `create` refuses a configuration; and a watchdog that turns a deadlock of
// create's namespace helpers into a test failure. Names start with `Mount`
// (or say mount/create in full) so the other suites' helpers never collide
// with these.

/// Whether the mount suites run: they build sandboxes, which needs root. Under
/// `CI=true` they run anyway, so a CI job without root fails instead of skipping.
enum MountGate {
    static var enabled: Bool { Privileges.isRoot || Privileges.isCI }
}

/// A host uid and gid no account has: only the idmapped mount can make a
/// directory they own the guest's own.
enum MountIDs {
    static let owner: uid_t = 4242
    static let group: gid_t = 4242
}

/// Runs `body` with a fresh host directory made by `mkdtemp` under /tmp,
/// owned by `owner`:`group` (this process's, root, when nil) with `mode`, and
/// removes it with everything in it afterwards, whether `body` returns or
/// throws, without following any symlink inside it (a guest may have planted
/// one to `/`).
@discardableResult
func withMountHostDirectory<Result>(
    owner: uid_t? = nil, group: gid_t? = nil, mode: mode_t = 0o755, _ body: (String) async throws -> Result
) async throws -> Result {
    var template = Array("/tmp/secure-exec-mount-test-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw MountHostError(step: "mkdtemp", code: errno) }
    let path = String(cString: made)
    defer { MountHostFiles.removeTree(path) }
    if owner != nil || group != nil {
        guard chown(path, owner ?? getuid(), group ?? getgid()) == 0 else { throw MountHostError(step: "chown \(path)", code: errno) }
    }
    guard chmod(path, mode) == 0 else { throw MountHostError(step: "chmod \(path)", code: errno) }
    return try await body(path)
}

/// A host directory owned by 4242:4242 with mode 0700 (made by mkdtemp): no
/// one but its owner (and root) may even list it.
@discardableResult
func withPrivateHostDirectory<Result>(_ body: (String) async throws -> Result) async throws -> Result {
    try await withMountHostDirectory(owner: MountIDs.owner, group: MountIDs.group, mode: 0o700, body)
}

/// Host-side file operations for the directories the tests mount.
enum MountHostFiles {
    /// Writes `text` to a new file at `path` (its parent must exist), owned by `owner`:`group` with `mode`.
    static func write(_ path: String, _ text: String, owner: uid_t? = nil, group: gid_t? = nil, mode: mode_t = 0o644) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw MountHostError(step: "create \(path)", code: errno) }
        defer { close(fd) }
        try writeAll(fd, Array(text.utf8), path: path)
        if owner != nil || group != nil {
            guard fchown(fd, owner ?? getuid(), group ?? getgid()) == 0 else { throw MountHostError(step: "chown \(path)", code: errno) }
        }
        guard fchmod(fd, mode) == 0 else { throw MountHostError(step: "chmod \(path)", code: errno) }
    }

    /// Replaces the contents of the existing file at `path` in place (same
    /// inode, so a watch on it or on its directory sees a change, not a rename).
    static func overwrite(_ path: String, _ text: String) throws {
        let fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw MountHostError(step: "open \(path)", code: errno) }
        defer { close(fd) }
        try writeAll(fd, Array(text.utf8), path: path)
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let count = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw MountHostError(step: "write \(path)", code: errno) }
            offset += count
        }
    }

    /// Makes the directory `path` (its parent must exist), owned by `owner`:`group` with `mode`.
    static func makeDirectory(_ path: String, owner: uid_t? = nil, group: gid_t? = nil, mode: mode_t = 0o755) throws {
        guard mkdir(path, mode) == 0 else { throw MountHostError(step: "mkdir \(path)", code: errno) }
        if owner != nil || group != nil {
            guard lchown(path, owner ?? getuid(), group ?? getgid()) == 0 else { throw MountHostError(step: "chown \(path)", code: errno) }
        }
        guard chmod(path, mode) == 0 else { throw MountHostError(step: "chmod \(path)", code: errno) }
    }

    /// Makes a symlink at `path` whose text is `target`.
    static func symlink(_ path: String, to target: String) throws {
        guard Glibc.symlink(target, path) == 0 else { throw MountHostError(step: "symlink \(path) -> \(target)", code: errno) }
    }

    /// `lstat` of `path` (a symlink is reported as itself, never followed).
    static func status(_ path: String) throws -> stat {
        var info = stat()
        guard lstat(path, &info) == 0 else { throw MountHostError(step: "lstat \(path)", code: errno) }
        return info
    }

    /// Whether anything (a dangling symlink included) exists at `path`.
    static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    /// Whether `path` is a symlink.
    static func isSymlink(_ path: String) -> Bool {
        (try? status(path)).map { $0.st_mode & S_IFMT == S_IFLNK } ?? false
    }

    /// The owner, group and permission bits (setuid, setgid and sticky included) of `path`.
    static func ownership(_ path: String) throws -> MountOwnership {
        let info = try status(path)
        return MountOwnership(owner: info.st_uid, group: info.st_gid, mode: info.st_mode & 0o7777)
    }

    /// The contents of the regular file at `path` as text, or nil when it cannot be read (a symlink is not followed).
    static func read(_ path: String) -> String? {
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
    static func listing(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
            .filter { !$0.hasPrefix(".secure-exec-") }.sorted()
    }

    /// Removes `path` and, if it is a real directory, everything below it.
    /// Symlinks are unlinked, never followed: a guest's `escape -> /` in a
    /// read-write mount must not turn the cleanup into `rm -rf /`.
    static func removeTree(_ path: String) {
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

/// Who owns a host file and its permission bits.
struct MountOwnership: Equatable, CustomStringConvertible {
    var owner: uid_t
    var group: gid_t
    var mode: mode_t

    /// The file carries a setuid or setgid bit.
    var hasPrivilegeBits: Bool { mode & (S_ISUID | S_ISGID) != 0 }

    var description: String { "\(owner):\(group) mode \(String(mode, radix: 8))" }
}

struct MountHostError: Error, CustomStringConvertible {
    let step: String
    let code: Int32
    var description: String { "\(step) failed: \(String(cString: strerror(code)))" }
}

/// Calls `create` expecting `NodeRuntime.create` to refuse the configuration
/// with `.invalidArgument` (and a message containing `mentioning`, when
/// given). A runtime that was created after all is disposed at once, and the
/// test fails. Returns the error thrown.
@discardableResult
func expectRefusedAtCreate(
    _ comment: Comment? = nil, mentioning: String? = nil, sourceLocation: SourceLocation = #_sourceLocation,
    _ create: () async throws -> NodeRuntime
) async -> SecureExecError? {
    let prefix = comment.map { "\($0): " } ?? ""
    do {
        let runtime = try await create()
        await runtime.dispose()
        Issue.record("\(prefix)create succeeded; expected .invalidArgument", sourceLocation: sourceLocation)
        return nil
    } catch let error as SecureExecError {
        #expect(error.code == .invalidArgument, "\(prefix)\(error)", sourceLocation: sourceLocation)
        if let mentioning {
            #expect(
                error.message.contains(mentioning), "\(prefix)the message does not name \(mentioning.debugDescription): \(error)",
                sourceLocation: sourceLocation)
        }
        return error
    } catch {
        Issue.record("\(prefix)expected a SecureExecError .invalidArgument, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// A guest that failed or printed something other than one JSON value.
struct MountGuestFailure: Error, CustomStringConvertible {
    let termination: Termination
    let stdout: String
    let stderr: String
    var description: String { "the guest \(termination); stdout: \(stdout.debugDescription); stderr: \(stderr.debugDescription)" }
}

/// JavaScript the mount suites run as guests.
enum MountGuest {
    /// Defines `attempt(f)`: "ok" (or what `f` returned) when `f` runs, its error code when it throws.
    static let attempt = """
        const fs = require("fs");
        const attempt = (f) => { try { const r = f(); return r === undefined ? "ok" : r; } catch (e) { return e.code || String(e); } };
        """
}

extension NodeRuntime {
    /// Runs `code` (which prints one JSON value) to its end and decodes what it
    /// printed; throws `MountGuestFailure` with its output unless it exited 0
    /// with valid JSON.
    func mountJSON<Value: Decodable>(_ code: String, as type: Value.Type = Value.self) async throws -> Value {
        let result = try await exec(MountGuest.attempt + "\n" + code, timeout: .seconds(30))
        let failure = MountGuestFailure(termination: result.termination, stdout: result.stdoutText, stderr: result.stderrText)
        guard result.termination == .exited(0) else { throw failure }
        do {
            return try JSONDecoder().decode(Value.self, from: Data(result.stdout))
        } catch {
            throw failure
        }
    }
}

/// The guest paths where the runtime binds its own files: node, its ELF
/// interpreter and libraries (as the runtime's own resolver finds them) and
/// ld.so.cache, with every directory above them. A mount at any of these
/// would replace what the guest runs.
enum MountRuntimeFiles {
    static func guestPaths() -> [String] {
        var files = ["/usr/bin/node", "/etc/ld.so.cache"]
        let node = (try? RuntimeAssets.locate(node: nil).node) ?? "/usr/bin/node"
        if let resolved = try? SharedLibraryResolver.runtimeFiles(forExecutable: node) {
            files += resolved.map(\.guestPath).filter(isNormalized)
        }
        var paths = Set<String>()
        for file in files {
            var path = file
            while path != "/" && !path.isEmpty {
                paths.insert(path)
                path = (path as NSString).deletingLastPathComponent
            }
        }
        return paths.sorted()
    }

    private static func isNormalized(_ path: String) -> Bool {
        path.hasPrefix("/") && !path.hasSuffix("/")
            && !path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).contains { $0.isEmpty || $0 == "." || $0 == ".." }
    }
}

/// Ends a deadlock among this process's namespace helpers so a test can
/// report it instead of hanging the whole run.
///
/// `create` forks short-lived helpers (children of this process in a user
/// namespace of their own, never exec'd) and blocks a thread in a system call
/// until each exits. If two such helpers wait on each other, the blocked
/// threads can starve Swift's cooperative pool, so neither `.timeLimit` nor a
/// Swift timeout ever runs. This watchdog runs on a Dispatch timer instead:
/// after `limit` it SIGKILLs every child of this process that sits in a user
/// namespace mapping a single id (the idmap helpers; a sandbox's maps 65536),
/// which unblocks the waiters, and remembers whom it killed. Call `stop()` when the work is done.
final class MountHelperWatchdog: @unchecked Sendable {
    // @unchecked: the Dispatch source is thread-safe (resumed in init, cancelled after); `killed` is behind a Mutex.
    private let killed = Mutex<[HostProcessEntry]>([])
    private let source: any DispatchSourceTimer

    init(after limit: Duration) {
        let (seconds, attoseconds) = limit.components
        source = DispatchSource.makeTimerSource(queue: .global())
        // Once the limit has passed, every second: a create freed from one
        // deadlock may start helpers that wait on each other again.
        source.schedule(
            deadline: .now() + .nanoseconds(Int(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)), repeating: .seconds(1))
        source.setEventHandler { [weak self] in
            let helpers = Self.strayHelpers()
            for helper in helpers { kill(helper.pid, SIGKILL) }
            self?.killed.withLock { $0 += helpers }
        }
        source.resume()
    }

    /// Stops the watchdog; returns the helpers it had to kill (empty when none hung).
    func stop() -> [HostProcessEntry] {
        source.cancel()
        return killed.withLock { $0 }
    }

    deinit { source.cancel() }

    /// Children of this process in another user namespace that maps a
    /// single id (an idmap helper; a sandbox maps 65536), not exec'd.
    static func strayHelpers() -> [HostProcessEntry] {
        let own = HostCensus.readLink("/proc/self/ns/user")
        return HostCensus.children().filter { child in
            guard !child.isSandboxInit, child.state != "Z", HostCensus.readLink("/proc/\(child.pid)/ns/user") != own,
                let map = HostCensus.readText("/proc/\(child.pid)/uid_map")
            else { return false }
            let lines = map.split(separator: "\n")
            return lines.count == 1 && lines[0].split(separator: " ").last == "1"
        }
    }
}
