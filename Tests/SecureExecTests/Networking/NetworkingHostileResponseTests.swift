import Foundation
import SecureExec
import TestSupport
import Testing

/// What a guest server says about its response is a claim; nothing it
/// claims may take the host down.
@Suite("Networking: hostile responses", .needsRoot, .timeLimit(.minutes(1)))
struct NetworkingHostileResponseTests {
    @Test("a Content-Length of 2^63-1 with no cap on the body is a broken response, not a crash")
    func hugeContentLength() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let server = try await runtime.spawn(
                """
                require("node:net").createServer((socket) => {
                  socket.once("data", () => socket.end("HTTP/1.1 200 OK\\r\\ncontent-length: 9223372036854775807\\r\\n\\r\\nshort"));
                }).listen(3000);
                """)
            try await runtime.waitForListener(port: 3000, process: server)
            do {
                let response = try await runtime.fetch(3000, maxBodyBytes: .max)
                Issue.record("a truncated body was accepted: \(response.body.count) bytes")
            } catch {
                #expect((error as? SecureExecError)?.code == .protocolError, "\(error)")
            }
        }
    }
}
