import SecureExec
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `writeFile` is all or nothing (Files.swift): the new contents replace the
/// old file only once all of them arrived; a source that throws, a full
/// workspace or a timeout leave the old file exactly as it was and no
/// temporary file behind, and a source's own error reaches the caller.
@Suite("Workspace: atomic writes", .needsRoot, .timeLimit(.minutes(2)))
struct WorkspaceAtomicWriteTests {
    /// What the caller's data source throws half-way.
    struct SourceBroke: Error, Equatable {
        let after: Int
    }

    /// `count` chunks of `chunk`, then `SourceBroke` instead of the end.
    struct BreakingChunks: AsyncSequence, Sendable {
        typealias Element = [UInt8]
        let chunk: [UInt8]
        let count: Int

        struct AsyncIterator: AsyncIteratorProtocol {
            let chunk: [UInt8]
            let count: Int
            var given = 0

            mutating func next() async throws -> [UInt8]? {
                guard given < count else { throw SourceBroke(after: given) }
                given += 1
                return chunk
            }
        }

        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(chunk: chunk, count: count) }
    }

    static let old = Array("the old contents\n".utf8)

    @Test("a streamed write whose source throws half-way leaves the old file exactly, and the caller gets its own error")
    func throwingSourceKeepsOldFile() async throws {
        try await withRuntime { runtime in
            try await runtime.writeFile("/workspace/kept.txt", Self.old)
            // 8 MiB before the failure: far more than the socket holds, so the
            // helper has written much of it by then.
            let chunks = BreakingChunks(chunk: [UInt8](repeating: 0x78, count: 1 << 20), count: 8)
            let error = await expectError(.ioFailed) { try await runtime.writeFile("/workspace/kept.txt", contentsOf: chunks) }
            #expect(error?.underlyingError as? SourceBroke == SourceBroke(after: 8), "\(String(describing: error))")
            #expect(try await runtime.readFile("/workspace/kept.txt") == Self.old)

            // A file that did not exist is not created.
            await expectError(.ioFailed) { try await runtime.writeFile("/workspace/new.txt", contentsOf: chunks) }
            await expectError(.notFound) { try await runtime.readFile("/workspace/new.txt") }

            // No temporary file is left, and the runtime writes normally after.
            #expect(try await runtime.workspaceListing(of: "/workspace", includingEntryFiles: true) == ["kept.txt"])
            try await runtime.writeFile("/workspace/kept.txt", contentsOf: AsyncStream { $0.yield(Array("new\n".utf8)); $0.finish() })
            #expect(try await runtime.readTextFile("/workspace/kept.txt") == "new\n")
        }
    }

    @Test("a SecureExecError the source throws reaches the caller unchanged")
    func sourceSecureExecError() async throws {
        try await withRuntime { runtime in
            try await runtime.writeFile("/tmp/kept", Self.old)
            let own = SecureExecError(.timeout, "the caller's own upstream timed out", step: "upstream")
            let chunks = AsyncThrowingStream<[UInt8], any Error> { continuation in
                continuation.yield([1, 2, 3])
                continuation.finish(throwing: own)
            }
            let error = await expectError(.timeout) { try await runtime.writeFile("/tmp/kept", contentsOf: chunks) }
            #expect(error == own)
            #expect(try await runtime.readFile("/tmp/kept") == Self.old)
            #expect(try await runtime.workspaceListing(of: "/tmp", includingEntryFiles: true) == ["kept"])
        }
    }

    @Test("a replacement that fills the workspace fails with ENOSPC and leaves the old file exactly")
    func fullWorkspaceKeepsOldFile() async throws {
        try await withRuntime(limits: Limits(workspaceBytes: 16 << 20)) { runtime in
            try await runtime.writeFile("/workspace/kept.bin", Self.old)
            let chunks = WorkspaceRepeatedChunks(chunk: [UInt8](repeating: 0x79, count: 1 << 20), count: 64)
            await expectError(.ioFailed, errno: ENOSPC) { try await runtime.writeFile("/workspace/kept.bin", contentsOf: chunks) }
            #expect(try await runtime.readFile("/workspace/kept.bin") == Self.old)
            #expect(try await runtime.workspaceListing(of: "/workspace", includingEntryFiles: true) == ["kept.bin"])
        }
    }

    @Test("a write that runs past fileOperationTimeout leaves the old file and no temporary file")
    func timeoutKeepsOldFile() async throws {
        try await withRuntime(limits: Limits(fileOperationTimeout: .seconds(1))) { runtime in
            try await runtime.writeFile("/workspace/kept.txt", Self.old)
            let chunks = AsyncStream<[UInt8]> { continuation in
                continuation.yield(Array("first chunk".utf8))
                Task {
                    try? await Task.sleep(for: .seconds(2))
                    continuation.finish()
                }
            }
            await expectError(.timeout) { try await runtime.writeFile("/workspace/kept.txt", contentsOf: chunks) }
            #expect(try await runtime.readFile("/workspace/kept.txt") == Self.old)
            #expect(try await runtime.workspaceListing(of: "/workspace", includingEntryFiles: true) == ["kept.txt"])
        }
    }

    @Test("a replaced file keeps its mode; one the guest made read-only is refused and unchanged")
    func modesAndPermissions() async throws {
        try await withRuntime { runtime in
            let made = try await runtime.workspaceOutput(
                """
                const fs = require("fs");
                fs.writeFileSync("/workspace/run.sh", "old"); fs.chmodSync("/workspace/run.sh", 0o750);
                fs.writeFileSync("/workspace/frozen", "old"); fs.chmodSync("/workspace/frozen", 0o444);
                console.log("made");
                """)
            #expect(made == "made\n")
            try await runtime.writeFile("/workspace/run.sh", text: "new")
            await expectError(.ioFailed, errno: EACCES) { try await runtime.writeFile("/workspace/frozen", text: "new") }
            let seen = try await runtime.workspaceOutput(
                """
                const fs = require("fs");
                const mode = (path) => (fs.statSync(path).mode & 0o777).toString(8);
                console.log(mode("/workspace/run.sh"), fs.readFileSync("/workspace/run.sh", "utf8"));
                console.log(mode("/workspace/frozen"), fs.readFileSync("/workspace/frozen", "utf8"));
                """)
            #expect(seen == "750 new\n444 old\n")
        }
    }

    @Test("a streamed fetch upload whose source throws gives the caller its own error")
    func throwingUploadSource() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let server = try await runtime.startGuest(
                """
                require("node:http").createServer((req, res) => {
                  let length = 0;
                  req.on("data", (chunk) => length += chunk.length);
                  req.on("end", () => res.end("got " + length));
                }).listen(3000, "127.0.0.1");
                """)
            try await runtime.waitForListener(port: 3000, process: server.process)
            let chunks = BreakingChunks(chunk: [UInt8](repeating: 0x7a, count: 64 << 10), count: 4)
            let error = await expectError(.ioFailed) {
                try await runtime.fetch(3000, path: "/upload", method: "POST", bodyStream: chunks, timeout: .seconds(20))
            }
            #expect(error?.underlyingError as? SourceBroke == SourceBroke(after: 4), "\(String(describing: error))")
            // The connection it broke is not reused for the next request.
            let next = try await runtime.fetch(3000, path: "/upload", method: "POST", body: "abc", timeout: .seconds(20))
            #expect(next.bodyText == "got 3")
            server.process.kill()
            _ = try await server.process.wait()
        }
    }
}
