import CNamespaces
import TestSupport
import Testing

@testable import SecureExec

/// Init answers every request, including ones it cannot act on, with the
/// request's id: the caller hears why instead of waiting forever.
@Suite("Init protocol: answers", .needsRoot, .timeLimit(.minutes(1)))
struct InitAnswerTests {
    @Test("an unknown request kind is answered, to its sender, as a protocol error naming the reason")
    func unknownRequest() async throws {
        try await withRuntime { runtime in
            let reply = try runtime.sandbox.connection.request(
                se_request_type(rawValue: 99), step: "test", records: { _ in [] }, fds: [])
            switch await reply.wait() {
            case .failure(let error):
                #expect(error.code == .protocolError, "\(error)")
                #expect(error.step == "unknown request type", "\(error)")
            case .success(let reply):
                Issue.record("init answered an unknown request with \(reply)")
            }
            // The sandbox goes on serving ordinary requests.
            let process = try await runtime.spawn("process.exit(3)")
            #expect(try await process.wait() == .exited(3))
        }
    }

    @Test("a malformed spawn request fails that spawn, and only it")
    func malformedSpawn() async throws {
        try await withRuntime { runtime in
            let reply = try runtime.sandbox.connection.request(
                SE_REQ_SPAWN, step: "test", records: { _ in ["not a record"] }, fds: [])
            switch await reply.wait() {
            case .failure(let error): #expect(error.code == .spawnFailed, "\(error)")
            case .success(let reply): Issue.record("init answered a malformed spawn with \(reply)")
            }
            let process = try await runtime.spawn("process.exit(0)")
            #expect(try await process.wait() == .exited(0))
        }
    }
}
