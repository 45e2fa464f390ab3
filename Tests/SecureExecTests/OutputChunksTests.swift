import Foundation
import SecureExec
import TestSupport
import Testing

/// `process.stdout` and `process.stderr` as async sequences, with
/// backpressure once read and a bounded buffer before.
@Suite("Output as async sequences", .needsRoot, .timeLimit(.minutes(1)))
struct OutputChunksTests {
    static func collect(_ chunks: OutputChunks) async -> [UInt8] {
        var bytes: [UInt8] = []
        for await chunk in chunks { bytes += chunk }
        return bytes
    }

    @Test("without callbacks, stdout and stderr arrive in process.stdout and process.stderr, every byte, then end")
    func sequences() async throws {
        try await withRuntime { runtime in
            let process = try await runtime.spawn(
                "for (let i = 0; i < 1000; i++) console.log('line ' + i); console.error('to stderr');")
            async let out = Self.collect(process.stdout)
            async let err = Self.collect(process.stderr)
            let (stdout, stderr) = await (out, err)
            let expected = (0..<1000).map { "line \($0)\n" }.joined()
            #expect(String(decoding: stdout, as: UTF8.self) == expected)
            #expect(String(decoding: stderr, as: UTF8.self) == "to stderr\n")
            #expect(try await process.wait() == .exited(0))
            #expect(!process.stdout.isTruncated)
        }
    }

    @Test("a reader that stops reading holds the guest back (backpressure), and it goes on once read")
    func backpressure() async throws {
        try await withRuntime { runtime in
            // 8 MiB in 64 KiB writes, once the host says go (after its reader started).
            let process = try await runtime.spawn(
                """
                const fs = require("node:fs");
                const chunk = Buffer.alloc(65536, 120);
                process.stdin.once("data", () => { for (let i = 1; i <= 128; i++) fs.writeSync(1, chunk); process.exit(0); });
                """)
            var iterator = process.stdout.makeAsyncIterator()
            try await process.writeStdin("go")
            var received = 0
            if let first = await iterator.next() { received += first.count }
            // Not reading now: the guest must stall well before its 8 MiB.
            try await Task.sleep(for: .milliseconds(500))
            #expect(process.termination == nil, "the guest finished although nobody read its output")
            while let chunk = await iterator.next() { received += chunk.count }
            #expect(received == 128 * 65536)
            #expect(try await process.wait() == .exited(0))
        }
    }

    @Test("a guest nobody reads never blocks: past 1 MiB its unread output is dropped and flagged")
    func unreadDoesNotBlock() async throws {
        try await withRuntime { runtime in
            let process = try await runtime.spawn(
                "const c = Buffer.alloc(65536, 120); for (let i = 0; i < 64; i++) require('node:fs').writeSync(1, c);")
            #expect(try await process.wait() == .exited(0))
            #expect(process.stdout.isTruncated)
            let kept = await Self.collect(process.stdout)
            #expect(kept.count <= 1 << 20 && kept.count > 0)
        }
    }

    @Test("with a callback, the stream goes to the callback and the sequence is empty")
    func callbackTakesIt() async throws {
        try await withRuntime { runtime in
            let output = GuestOutput()
            let process = try await runtime.spawn("console.log('hi')", onStdout: output.append)
            #expect(try await process.wait() == .exited(0))
            #expect(output.text == "hi\n")
            #expect(await Self.collect(process.stdout).isEmpty)
        }
    }
}

extension OutputChunksTests {
    @Test("a reader that leaves its loop early does not leave the guest waiting for it")
    func readerLeaves() async throws {
        try await withRuntime { runtime in
            let process = try await runtime.spawn(
                "const c = Buffer.alloc(65536, 120); for (let i = 0; i < 128; i++) require('node:fs').writeSync(1, c);")
            for await _ in process.stdout { break }
            let ended = await value(of: Task { try? await process.wait() }, within: .seconds(20))
            #expect(ended == .some(.exited(0)), "the guest still waited for a reader that had left")
        }
    }
}
