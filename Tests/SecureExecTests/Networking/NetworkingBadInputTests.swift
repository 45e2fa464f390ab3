import SecureExec
import TestSupport
import Testing

/// Requests that can never be right are refused with `.invalidArgument`
/// before anything is sent (the guest sees no connection), and nothing is
/// exposed beyond loopback without an explicit opt-in.
@Suite("Networking: bad input", .needsRoot, .timeLimit(.minutes(2)))
struct NetworkingBadInputTests {
    @Test("fetch refuses ports out of range and CR/LF in headers or the path, sending nothing")
    func fetchRefusesBadInput() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            let attempts: [(String, @Sendable () async throws -> Void)] = [
                ("port 0", { _ = try await runtime.fetch(0) }),
                ("port -1", { _ = try await runtime.fetch(-1) }),
                ("port 65536", { _ = try await runtime.fetch(65536) }),
                ("CR/LF in a header value", {
                    _ = try await runtime.fetch(3000, headers: [HTTPHeader("x-test", "a\r\nx-injected: 1")])
                }),
                ("LF in a header value", { _ = try await runtime.fetch(3000, headers: [HTTPHeader("x-test", "a\nb")]) }),
                ("CR/LF in a header name", { _ = try await runtime.fetch(3000, headers: [HTTPHeader("x-a\r\nx-b", "1")]) }),
                ("CR/LF in the path", { _ = try await runtime.fetch(3000, path: "/echo/a\r\nx-injected: 1") }),
                ("CR/LF in the method", { _ = try await runtime.fetch(3000, method: "GET\r\n", body: "") }),
                ("a negative timeout", { _ = try await runtime.fetch(3000, timeout: .milliseconds(-1)) }),
                ("port 0 for a streamed fetch", { _ = try await runtime.fetchStreaming(0) { $0.status } }),
                ("CR/LF in a streamed fetch's header", {
                    _ = try await runtime.fetchStreaming(3000, headers: [HTTPHeader("x-test", "a\r\nb")]) { $0.status }
                }),
            ]
            for (name, attempt) in attempts {
                do {
                    try await attempt()
                    Issue.record("\(name): accepted")
                } catch let error as SecureExecError {
                    #expect(error.code == .invalidArgument, "\(name): \(error)")
                } catch {
                    Issue.record("\(name): threw \(error), not a SecureExecError")
                }
            }
            // Nothing reached the guest: the next fetch's connection is the first it ever accepted.
            #expect(try await runtime.fetch(3000, path: "/connections").bodyText == "1")
        }
    }

    @Test("expose refuses a non-loopback host without allowNonLoopback, binding nothing")
    func exposeRefusesNonLoopback() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            let port = try HostPorts.free(host: "0.0.0.0")
            for host in ["0.0.0.0", "::", "192.0.2.1"] {
                let error = await #expect(throws: SecureExecError.self) {
                    try await runtime.expose(3000, host: host, port: port)
                }
                #expect(error?.code == .invalidArgument, "\(host): \(String(describing: error))")
            }
            #expect(HostPorts.canListen(host: "0.0.0.0", port: port), "port \(port) was bound despite the refusal")
        }
    }

    /// Only loopback literals and "localhost" are loopback by themselves: a
    /// name is resolved when binding, and "127.0.0.1.10.0.0.5.nip.io" (a
    /// wildcard-DNS name) resolves to 10.0.0.5. The name used here resolves
    /// nowhere, so a binding attempt shows as `.ioFailed` instead.
    @Test("expose refuses a host name that merely starts with \"127.\" (it could resolve anywhere)")
    func exposeRefusesLoopbackLookalikeName() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let error = await #expect(throws: SecureExecError.self) {
                try await runtime.expose(3000, host: "127.0.0.1.example.com")
            }
            #expect(error?.code == .invalidArgument, "\(String(describing: error))")
        }
    }

    @Test("expose refuses ports out of range")
    func exposeRefusesBadPorts() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            for (guestPort, hostPort) in [(0, 0), (65536, 0), (3000, -1), (3000, 65536)] {
                let error = await #expect(throws: SecureExecError.self) {
                    try await runtime.expose(guestPort, port: hostPort)
                }
                #expect(error?.code == .invalidArgument, "guest \(guestPort), host \(hostPort): \(String(describing: error))")
            }
        }
    }
}
