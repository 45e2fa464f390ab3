import Foundation
import SecureExec
import TestSupport
import Testing

/// Each failure is blamed on the side that caused it.
@Suite("Networking: who is to blame", .needsRoot, .timeLimit(.minutes(1)))
struct NetworkingAttributionTests {
    static let server = """
        require("node:http").createServer((request, response) => {
          if (request.url === "/slow") { response.writeHead(200); response.write("part"); return; }
          response.setHeader("set-cookie", ["a=1", "b=2"]);
          response.end("ok");
        }).listen(3000);
        """

    @Test("a non-ASCII path is the caller's invalid argument, before anything reaches the guest")
    func nonASCIIPath() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let server = try await runtime.spawn(Self.server)
            try await runtime.waitForListener(port: 3000, process: server)
            await expectError(.invalidArgument) { _ = try await runtime.fetch(3000, path: "/caf\u{E9}") }
            #expect(try await runtime.fetch(3000, path: "/caf%C3%A9").status == 200)
        }
    }

    @Test("a streamed response lists repeated headers, and its body read after the handler returned is an error, not silence")
    func streamingResponse() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let server = try await runtime.spawn(Self.server)
            try await runtime.waitForListener(port: 3000, process: server)
            let escaped = try await runtime.fetchStreaming(3000) { response in
                #expect(response.headerValues("Set-Cookie") == ["a=1", "b=2"])
                return response.body
            }
            await expectError(.invalidArgument) {
                for try await _ in escaped {}
            }
        }
    }

    @Test("a fetch in flight when the runtime is disposed fails with .disposed")
    func disposedDuringFetch() async throws {
        let runtime = try await NodeRuntime.create(permissions: Permissions(network: .allow))
        let server = try await runtime.spawn(Self.server)
        try await runtime.waitForListener(port: 3000, process: server)
        let fetch = Task { try await runtime.fetch(3000, path: "/slow", timeout: .seconds(30)) }
        try? await Task.sleep(for: .milliseconds(300))
        await runtime.dispose()
        switch await fetch.result {
        case .success(let response): Issue.record("the fetch succeeded: \(response.status)")
        case .failure(let error): #expect((error as? SecureExecError)?.code == .disposed, "\(error)")
        }
    }
}
