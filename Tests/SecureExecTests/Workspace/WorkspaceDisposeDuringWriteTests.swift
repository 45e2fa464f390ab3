import Foundation
import SecureExec
import TestSupport
import Testing

/// A write cut short by dispose leaves the project directory as it was.
@Suite("Workspace: a write cut short", .needsRoot, .timeLimit(.minutes(1)))
struct WorkspaceDisposeDuringWriteTests {
    @Test("dispose during a streamed writeFile leaves the old file and no temporary file in a read-write project")
    func disposeMidWrite() async throws {
        try await withPrivateHostDirectory { directory in
            try HostFiles.write("\(directory)/target.txt", "old", owner: MountIDs.owner, group: MountIDs.group)
            let runtime = try await NodeRuntime.create(workspace: Workspace(host: directory, mode: .readWrite))
            // 40 KB every 100 ms for 5 s: the write is still open at dispose.
            let chunks = AsyncStream<[UInt8]> { continuation in
                let producer = Task {
                    for _ in 0..<50 {
                        continuation.yield(Array(repeating: 120, count: 40_000))
                        try? await Task.sleep(for: .milliseconds(100))
                    }
                    continuation.finish()
                }
                continuation.onTermination = { _ in producer.cancel() }
            }
            let write = Task { try await runtime.writeFile("/workspace/target.txt", contentsOf: chunks) }
            try? await Task.sleep(for: .milliseconds(500))
            await runtime.dispose()
            _ = await write.result
            #expect(HostFiles.read("\(directory)/target.txt") == "old")
            let strays = HostFiles.listing(directory).filter { $0.hasPrefix(".secure-exec-write") }
            #expect(strays.isEmpty, "left behind: \(strays)")
        }
    }
}
