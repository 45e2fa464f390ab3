import SecureExec
import TestSupport
import Testing

/// Whole files of tens of MiB move between host and sandbox intact
/// (README, "Uploading a project": files). How fast is the benchmark's
/// `files` workload; this checks the bytes.
@Suite("Workspace: large files", .needsRoot, .timeLimit(.minutes(3)))
struct WorkspaceLargeFileTests {
    static let size = 64 << 20

    @Test("a 64 MiB file round-trips exactly through writeFile and readFile, and the guest sees the same bytes")
    func roundTrip64MiB() async throws {
        // Holding 64 MiB, so not beside the tests that measure this process's memory.
        try await measuredExclusively {
            try await withRuntime(limits: Limits(workspaceBytes: 160 << 20)) { runtime in
                // Sent in 1 MiB chunks of the pattern (one shared array), read back whole.
                try await runtime.writeFile(
                    "/workspace/big.bin", contentsOf: TransferPattern.Chunks(total: Self.size, chunkSize: 1 << 20))
                var check = TransferPattern.Check()
                check.consume(try await runtime.readFile("/workspace/big.bin", maxBytes: Self.size))
                #expect(check.count == Self.size)
                #expect(check.firstMismatch == nil, "first wrong byte at \(check.firstMismatch ?? -1)")

                // The guest reads the same bytes: nothing was lost or reordered on the way in.
                let checked = try await runtime.exec(
                    TransferPattern.javaScript + """
                        const bytes = require("node:fs").readFileSync("/workspace/big.bin");
                        console.log(bytes.length, firstMismatch(0, bytes));
                        """, timeout: .seconds(60))
                #expect(checked.stdoutText == "\(Self.size) -1\n", "stderr: \(checked.stderrText)")

                // One byte over maxBytes is refused, not truncated.
                await expectError(.responseTooLarge) { try await runtime.readFile("/workspace/big.bin", maxBytes: Self.size - 1) }
            }
        }
    }

    @Test("a file the guest wrote in many small writes reads back whole")
    func manySmallWrites() async throws {
        try await withRuntime { runtime in
            // 4 MiB in 4 KiB writes: the host reads it in chunks of whatever size the socket gives.
            let made = try await runtime.exec(
                TransferPattern.javaScript + """
                    const fs = require("node:fs");
                    const fd = fs.openSync("/workspace/pieces.bin", "w");
                    for (let offset = 0; offset < (4 << 20); offset += 4096) fs.writeSync(fd, pattern(offset, 4096));
                    fs.closeSync(fd);
                    """, timeout: .seconds(60))
            #expect(made.termination == .exited(0), "stderr: \(made.stderrText)")
            let read = try await runtime.readFile("/workspace/pieces.bin")
            let expected = TransferPattern.chunk(offset: 0, count: 4 << 20)
            #expect(firstDifference(read, expected) == nil, "first wrong byte at \(firstDifference(read, expected) ?? -1)")
        }
    }
}
