import Foundation
import Synchronization
import TestSupport
import Testing

@testable import SecureExec

#if canImport(Glibc)
import Glibc
#endif

// Helpers for the host-mount suites (Mounts/*.swift): private host
// directories, host ownership readings, guests that answer in one JSON line,
// the runtime's own files, and a watchdog that turns a deadlock of create's
// namespace helpers into a test failure. Names start with `Mount` so the
// other suites' helpers never collide with these.

/// A host uid and gid no account has: only the idmapped mount can make a
/// directory they own the guest's own.
enum MountIDs {
    static let owner: uid_t = 4242
    static let group: gid_t = 4242
}

/// A host directory owned by 4242:4242 with mode 0700 (made by mkdtemp): no
/// one but its owner (and root) may even list it.
@discardableResult
func withPrivateHostDirectory<Result>(_ body: (String) async throws -> Result) async throws -> Result {
    try await withHostDirectory(owner: MountIDs.owner, group: MountIDs.group, mode: 0o700, body)
}

extension HostFiles {
    /// The owner, group and permission bits (setuid, setgid and sticky included) of `path`.
    static func ownership(_ path: String) throws -> MountOwnership {
        let info = try status(path)
        return MountOwnership(owner: info.st_uid, group: info.st_gid, mode: info.st_mode & 0o7777)
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
