import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A guest allowed to use the network still has only its sandbox's own
/// loopback (README, "Security model": no route out): the host's
/// 127.0.0.1 services and the outside world are unreachable.
@Suite("No way out of the sandbox's network", .needsRoot, .timeLimit(.minutes(1)))
struct HostNetworkIsolationTests {
    @Test("a server on the host's 127.0.0.1 is refused to a guest and sees no connection")
    func hostLoopbackUnreachable() async throws {
        let listener = try EscapeHostListener(.ipv4Loopback)
        defer { listener.close() }

        let client = try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            try await runtime.runGuest(GuestPrograms.tcpConnect(host: "127.0.0.1", port: listener.port))
        }

        #expect(client.termination == .exited(0))
        #expect(client.line == "error ECONNREFUSED")
        #expect(listener.drain() == 0)
        // Control: the listener does count a connection the host makes itself.
        try listener.connectFromHost()
        #expect(listener.drain() == 1)
    }

    @Test("a guest has no route off its loopback")
    func noRouteOut() async throws {
        let client = try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            // 192.0.2.1 is TEST-NET-1: never a real host, so only the missing route can answer.
            try await runtime.runGuest(GuestPrograms.tcpConnect(host: "192.0.2.1", port: 80))
        }
        #expect(client.termination == .exited(0))
        #expect(client.line == "error ENETUNREACH")
    }
}

/// Processes in one runtime share a loopback like processes on one machine,
/// and separate runtimes never share one (README, "The API"): two
/// runtimes can each serve port 3000, and neither can reach the other.
@Suite("Loopback per runtime", .needsRoot, .timeLimit(.minutes(1)))
struct LoopbackSharingTests {
    @Test("a guest client reaches a guest server in the same runtime")
    func guestsShareLoopback() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let server = try await runtime.startGuest(GuestPrograms.server(port: 4000, body: "served on 4000"))
            try await runtime.waitForListener(port: 4000, process: server.process)

            let client = try await runtime.runGuest(GuestPrograms.httpGet(port: 4000))

            #expect(client.termination == .exited(0))
            #expect(client.line == "body served on 4000")
            #expect(client.stderr == "")
        }
    }

    @Test("two runtimes each serve port 3000 and cannot reach each other")
    func runtimesAreSeparate() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { a in
            try await withRuntime(permissions: Permissions(network: .allow)) { b in
                let serverA = try await a.startGuest(GuestPrograms.server(port: 3000, body: "A"))
                let serverB = try await b.startGuest(GuestPrograms.server(port: 3000, body: "B"))
                // Only B serves 3001: if A's guests could reach B's loopback, they would get "B-3001".
                let serverB3001 = try await b.startGuest(GuestPrograms.server(port: 3001, body: "B-3001"))
                try await a.waitForListener(port: 3000, process: serverA.process)
                try await b.waitForListener(port: 3000, process: serverB.process)
                try await b.waitForListener(port: 3001, process: serverB3001.process)

                #expect(try await a.fetch(3000).bodyText == "A")
                #expect(try await b.fetch(3000).bodyText == "B")
                #expect(try await b.fetch(3001).bodyText == "B-3001")

                #expect(try await a.runGuest(GuestPrograms.httpGet(port: 3000)).line == "body A")
                #expect(try await b.runGuest(GuestPrograms.httpGet(port: 3000)).line == "body B")
                #expect(try await a.runGuest(GuestPrograms.httpGet(port: 3001)).line == "error ECONNREFUSED")
                let hostToA3001 = await #expect(throws: SecureExecError.self) { try await a.fetch(3001) }
                #expect(hostToA3001?.code == .connectionFailed)

                // Both servers bound without a conflict and still run.
                #expect(serverA.process.termination == nil)
                #expect(serverB.process.termination == nil)
                #expect(serverA.stderr.text == "")
                #expect(serverB.stderr.text == "")
            }
        }
    }
}
