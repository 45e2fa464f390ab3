import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Any port may be bound in the sandbox's own network namespace
/// (`net.ipv4.ip_unprivileged_port_start` is 0 there), as a dev server on a
/// developer's machine binds port 80; it reaches nothing outside the sandbox.
@Suite("Guest system: privileged ports inside the sandbox", .needsRoot, .timeLimit(.minutes(2)))
struct PrivilegedPortTests {
    @Test("a server on port 80 is found by waitForListener and reached by fetch")
    func port80() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let guest = try await runtime.startGuest(
                """
                require("http").createServer((request, response) => response.end("port 80 " + request.url))
                  .listen(80, () => console.log("listening"));
                """)
            try await runtime.waitForListener(port: 80, timeout: .seconds(10), process: guest.process)
            let response = try await runtime.fetch(80, path: "/hello")
            #expect(response.status == 200)
            #expect(response.bodyText == "port 80 /hello", "stderr: \(guest.stderr.text)")
        }
    }

    @Test("a privileged port is the sandbox's own: the host's port 1 is not bound by it")
    func portStaysInside() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let guest = try await runtime.startGuest(
                #"require("net").createServer().listen(1, "127.0.0.1", () => console.log("listening"));"#)
            try await runtime.waitForListener(port: 1, timeout: .seconds(10), process: guest.process)
            // The host's own loopback has no listener on port 1 (ECONNREFUSED).
            #expect(throws: HostCallError.self) { try connectToHostLoopback(port: 1) }
        }
    }
}

/// Connects to 127.0.0.1:`port` on the host; throws `HostCallError` when nothing accepts.
private func connectToHostLoopback(port: Int) throws {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw HostCallError(step: "socket", errno: errno) }
    defer { close(fd) }
    _ = try withSocketAddress(host: "127.0.0.1", port: port) { address, length in
        guard connect(fd, address, length) == 0 else { throw HostCallError(step: "connect 127.0.0.1:\(port)", errno: errno) }
    }
}
