import Foundation
import SecureExec
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

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
