import SecureExec
import TestSupport
import Testing

/// Which guest addresses the host reaches: 127.0.0.1, ::1 and the wildcard.
/// `localhost` resolves to both loopbacks in node, so a dev server may well
/// listen on ::1 only.
@Suite("Networking: addresses", .needsRoot, .timeLimit(.minutes(2)))
struct NetworkingAddressTests {
    @Test("a guest listening only on ::1 is found by waitForListener(host: .ipv6Loopback) and reached by fetch")
    func ipv6LoopbackOnly() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(port: 3000, host: "::1"), port: 3000, host: .ipv6Loopback)

            #expect(try runtime.findListener(port: 3000, host: .ipv6Loopback))
            #expect(try !runtime.findListener(port: 3000, host: .ipv4Loopback))
            let response = try await runtime.fetch(3000, path: "/echo/over-ipv6")
            #expect(response.status == 200)
            #expect(response.bodyText == "over-ipv6")
        }
    }

    @Test("a guest listening on 0.0.0.0 is found on 127.0.0.1 and reached by fetch")
    func ipv4Wildcard() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(port: 3000, host: "0.0.0.0"), port: 3000, host: .ipv4Loopback)

            #expect(try !runtime.findListener(port: 3000, host: .ipv6Loopback))
            let response = try await runtime.fetch(3000, path: "/echo/over-wildcard")
            #expect(response.status == 200)
            #expect(response.bodyText == "over-wildcard")
        }
    }

    @Test("a guest listening only on 127.0.0.1 is not reported as listening on ::1")
    func ipv4LoopbackIsNotIPv6() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(port: 3000, host: "127.0.0.1"), port: 3000, host: .ipv4Loopback)

            #expect(try runtime.findListener(port: 3000, host: .any))
            #expect(try !runtime.findListener(port: 3000, host: .ipv6Loopback))
            let error = await #expect(throws: SecureExecError.self) {
                try await runtime.waitForListener(port: 3000, host: .ipv6Loopback, timeout: .milliseconds(200))
            }
            #expect(error?.code == .listenerTimeout)
        }
    }
}
