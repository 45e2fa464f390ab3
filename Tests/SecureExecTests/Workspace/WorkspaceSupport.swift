import Foundation
import SecureExec
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Runs `body` with a fresh host directory under /tmp (mode `mode`) and
/// removes it with everything in it afterwards, whether `body` returns or throws.
///
/// `owner` (uid, gid) chowns it: a read-write mount's source must not belong to root.
func withWorkspaceHostDirectory<Result>(
    mode: mode_t = 0o755, owner: (uid_t, gid_t)? = nil, _ body: (String) async throws -> Result
) async throws -> Result {
    var template = Array("/tmp/secure-exec-workspace-test-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw WorkspaceHostError(step: "mkdtemp", errno: errno) }
    let path = String(cString: made)
    defer { try? FileManager.default.removeItem(atPath: path) }
    guard chmod(path, mode) == 0 else { throw WorkspaceHostError(step: "chmod \(path)", errno: errno) }
    if let owner, chown(path, owner.0, owner.1) != 0 { throw WorkspaceHostError(step: "chown \(path)", errno: errno) }
    return try await body(path)
}

/// Host-side file helpers for the directories the tests mount into sandboxes.
enum WorkspaceHostFiles {
    /// Writes `text` to `path` with `mode`, creating parent directories (mode 0755).
    static func write(_ path: String, _ text: String, mode: mode_t = 0o644) throws {
        let parent = (path as NSString).deletingLastPathComponent
        try makeDirectory(parent)
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else {
            throw WorkspaceHostError(step: "create \(path)", errno: errno)
        }
        guard chmod(path, mode) == 0 else { throw WorkspaceHostError(step: "chmod \(path)", errno: errno) }
    }

    /// Creates `path` and its missing parents, each chmod-ed to `mode` (umask does not apply).
    static func makeDirectory(_ path: String, mode: mode_t = 0o755) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue { return }
        try makeDirectory((path as NSString).deletingLastPathComponent, mode: mode)
        guard mkdir(path, mode) == 0 || errno == EEXIST else { throw WorkspaceHostError(step: "mkdir \(path)", errno: errno) }
        guard chmod(path, mode) == 0 else { throw WorkspaceHostError(step: "chmod \(path)", errno: errno) }
    }

    /// The contents of the host file at `path` as text, or nil when it cannot be read.
    static func read(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }
}

struct WorkspaceHostError: Error, CustomStringConvertible {
    let step: String
    let errno: Int32
    var description: String { "\(step) failed: \(String(cString: strerror(errno)))" }
}

/// Runs `body`, expecting it to throw a `SecureExecError` with `code` (and
/// `errno`, when given); records an issue otherwise. Returns the error thrown.
@discardableResult
func expectWorkspaceError<Value>(
    _ code: SecureExecError.Code, errno expectedErrno: Int32? = nil, _ comment: Comment? = nil,
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Value
) async -> SecureExecError? {
    do {
        let value = try await body()
        Issue.record(
            "expected \(code)\(comment.map { " (\($0))" } ?? ""), but it returned \(value)", sourceLocation: sourceLocation)
        return nil
    } catch let error as SecureExecError {
        #expect(error.code == code, "\(comment.map { "\($0): " } ?? "")\(error)", sourceLocation: sourceLocation)
        if let expectedErrno {
            #expect(error.errno == expectedErrno, "\(comment.map { "\($0): " } ?? "")\(error)", sourceLocation: sourceLocation)
        }
        return error
    } catch {
        Issue.record("expected a SecureExecError \(code), got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// `count` chunks, each the same `chunk`, made one at a time as they are asked
/// for (the array is shared, never copied: memory stays at one chunk).
/// `pulled` counts how many were taken.
struct WorkspaceRepeatedChunks: AsyncSequence, Sendable {
    typealias Element = [UInt8]

    let chunk: [UInt8]
    let count: Int
    let pulled = WorkspaceCounter()

    struct AsyncIterator: AsyncIteratorProtocol {
        let chunk: [UInt8]
        var remaining: Int
        let pulled: WorkspaceCounter

        mutating func next() async -> [UInt8]? {
            guard remaining > 0 else { return nil }
            remaining -= 1
            pulled.increment()
            return chunk
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(chunk: chunk, remaining: count, pulled: pulled) }
}

/// A thread-safe counter.
final class WorkspaceCounter: Sendable {
    private let value = Mutex(0)
    func increment() { value.withLock { $0 += 1 } }
    var count: Int { value.withLock { $0 } }
}

/// Host processes whose command line holds `marker` (e.g. a guest's unique argument).
func workspaceHostProcesses(containing marker: String) -> [HostProcessEntry] {
    HostCensus.processes().filter { $0.commandLine.contains(marker) }
}

extension NodeRuntime {
    /// Runs `code` with `exec` and returns its stdout, recording an issue
    /// (with its stderr) unless it exited 0.
    func workspaceOutput(_ code: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> String {
        let result = try await exec(code, timeout: .seconds(30))
        #expect(result.termination == .exited(0), "stderr: \(result.stderrText)", sourceLocation: sourceLocation)
        return result.stdoutText
    }
}

/// Directory entries as `ls -F` shows them: "dir/", "link@", "file" (and
/// "name?" for anything else), so a listing compares as one exact array.
enum WorkspaceListing {
    static func lines(_ entries: [DirectoryEntry]) -> [String] {
        entries.map { entry in
            switch entry.kind {
            case .file: entry.name
            case .directory: entry.name + "/"
            case .symlink: entry.name + "@"
            case .other: entry.name + "?"
            }
        }
    }
}

extension NodeRuntime {
    /// `readDirectory(path)` as `workspaceListing` shows it; without
    /// `includingEntryFiles`, the files the runtime writes guests' code to
    /// (".secure-exec-*") are left out.
    func workspaceListing(of path: String, includingEntryFiles: Bool = false) async throws -> [String] {
        WorkspaceListing.lines(try await readDirectory(path).filter { includingEntryFiles || !$0.name.hasPrefix(".secure-exec-") })
    }
}
