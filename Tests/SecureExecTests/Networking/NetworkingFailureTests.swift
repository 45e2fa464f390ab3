import SecureExec
import Synchronization
import TestSupport
import Testing

/// A guest that misbehaves at the HTTP level fails the one fetch with a
/// typed error, promptly, and leaves the runtime serving other requests.
@Suite("Networking: failing guests", .needsRoot, .timeLimit(.minutes(2)))
struct NetworkingFailureTests {
    /// Starts the misbehaving servers and a well-behaved one on 3000.
    private func startServers(_ runtime: NodeRuntime) async throws -> StartedGuest {
        _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
        return try await runtime.startServer(NetworkingGuests.misbehavingServers, ports: [4001, 4002, 4003])
    }

    @Test("a guest that accepts and never answers fails the fetch with .timeout after 500 ms")
    func neverAnswers() async throws {
        try await withMeasuredNetworkRuntime { runtime in
            let servers = try await startServers(runtime)
            let clock = ContinuousClock()
            let started = clock.now
            let error = await #expect(throws: SecureExecError.self) {
                try await runtime.fetch(4001, timeout: .milliseconds(500))
            }
            let elapsed = clock.now - started

            #expect(error?.code == .timeout, "\(String(describing: error))")
            #expect(elapsed >= .milliseconds(500), "gave up after \(milliseconds(elapsed)) ms")
            #expect(elapsed < .seconds(5), "returned after \(milliseconds(elapsed)) ms")
            try await servers.stdout.waitUntilContains("request")  // the request did reach the guest
            #expect(try await runtime.fetch(3000, path: "/echo/still-serving").bodyText == "still-serving")
        }
    }

    @Test("a guest that closes mid-body (10 of 100 bytes) fails the fetch with .protocolError, without hanging")
    func closesMidBody() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await startServers(runtime)
            // Not .timeout: the fetch ended because the guest closed, not at its 20 s timeout.
            let error = await #expect(throws: SecureExecError.self) {
                try await runtime.fetch(4002, timeout: .seconds(20))
            }

            #expect(error?.code == .protocolError, "\(String(describing: error))")
            #expect(try await runtime.fetch(3000, path: "/echo/still-serving").bodyText == "still-serving")
        }
    }

    @Test("a streamed body that breaks off hands over the bytes that came, then throws .protocolError")
    func closesMidBodyStreaming() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await startServers(runtime)
            let received = ByteCollector()
            let error = await #expect(throws: SecureExecError.self) {
                try await runtime.fetchStreaming(4002, timeout: .seconds(20)) { response in
                    for try await chunk in response.body { received.append(chunk) }
                }
            }

            #expect(error?.code == .protocolError, "\(String(describing: error))")
            #expect(received.bytes == Array(repeating: UInt8(ascii: "x"), count: 10))
        }
    }

    @Test("a guest that answers with garbage fails the fetch with .protocolError")
    func garbage() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await startServers(runtime)
            let error = await #expect(throws: SecureExecError.self) {
                try await runtime.fetch(4003, timeout: .seconds(20))
            }

            #expect(error?.code == .protocolError, "\(String(describing: error))")
            #expect(try await runtime.fetch(3000, path: "/echo/still-serving").bodyText == "still-serving")
        }
    }

    @Test("cancelling the task of a fetch to a guest that never answers ends it with .cancelled")
    func cancellation() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let servers = try await startServers(runtime)
            let fetch = Task { try await runtime.fetch(4001, timeout: .seconds(60)) }
            defer { fetch.cancel() }  // should the test fail before it cancels
            // Cancel only once the request is known to be waiting on the guest.
            try await servers.stdout.waitUntilContains("request")
            fetch.cancel()
            let result = await fetch.result

            guard case .failure(let failure) = result else {
                Issue.record("the cancelled fetch returned \(result)")
                return
            }
            #expect((failure as? SecureExecError)?.code == .cancelled, "\(failure)")
            #expect(try await runtime.fetch(3000, path: "/echo/still-serving").bodyText == "still-serving")
        }
    }
}

/// Bytes collected from a closure that may not return a value (it throws).
private final class ByteCollector: Sendable {
    private let collected = Mutex<[UInt8]>([])
    var bytes: [UInt8] { collected.withLock { $0 } }
    func append(_ chunk: [UInt8]) { collected.withLock { $0 += chunk } }
}
