import Foundation
import SecureExec
import TestSupport
import Testing

/// A guest may hang up its stdin at any moment while the host writes to it.
@Suite("Guest stdin hung up mid-write", .needsRoot, .timeLimit(.minutes(2)))
struct GuestStdinHangUpTests {
    @Test("guests that close stdin while the host is blocked writing to it: every write ends, and the host lives on")
    func hangUpWhileWriting() async throws {
        try await withRuntime { runtime in
            // Each guest reads a little, then closes stdin and exits, while the
            // host is waiting to write 4 MiB that will never be read.
            let payload = [UInt8](repeating: 120, count: 4 << 20)
            for round in 0..<40 {
                let process = try await runtime.spawn(
                    """
                    process.stdin.once("data", () => { process.stdin.destroy(); setTimeout(() => process.exit(0), \(round % 5)); });
                    """)
                do {
                    try await process.writeStdin(payload)
                } catch {
                    let code = (error as? SecureExecError)?.code
                    #expect(code == .ioFailed || code == .invalidArgument, "round \(round): \(error)")
                }
                #expect(try await process.wait() == .exited(0), "round \(round)")
            }
        }
    }
}
