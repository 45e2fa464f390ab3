import Foundation
@testable import SecureExec
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// From the security review of egress (issue 15): each test states what
/// must hold against a hostile guest or a careless host, and failed on the
/// code as first reviewed. The flood that needs the process's memory to
/// itself is in the leak tests (`EgressFloodTests`).
@Suite("Egress attacks", .needsRoot, .serialized, .timeLimit(.minutes(5)))
struct EgressAttackTests {
    /// A bare DNS query (no TCP length prefix) for `name`, type A, RD set.
    static func query(_ name: String, id: UInt16 = 0x1234, type: UInt16 = 1) -> [UInt8] {
        var bytes: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xFF), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        for label in name.split(separator: ".") {
            bytes.append(UInt8(label.utf8.count))
            bytes += Array(label.utf8)
        }
        bytes += [0, UInt8(type >> 8), UInt8(type & 0xFF), 0, 1]
        return bytes
    }

    static let publicAddress = IPAddress(EgressUpstreams.publicAddress)!

    /// A long, distinct name under upstream.test.
    static func longName(_ index: Int) -> String {
        String(repeating: "a", count: 60) + "." + String(repeating: "b", count: 60) + "."
            + String(repeating: "c", count: 60) + ".n\(index).upstream.test"
    }

    // MARK: - Hostile guest

    /// Pins are capped by address (4,096) but not by name: under a wildcard
    /// whose names share one address (a CDN, a wildcard record), every name
    /// the guest asks for is added to that address's set, without bound; and
    /// every connection to that address sorts the whole set under the lock.
    @Test("names pinned to one address are bounded, and a connection stays fast after many lookups")
    func pinNamesUnbounded() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let resolver = EgressResolver.custom { _ in [Self.publicAddress] }
        let policy = try upstreams.policy(allow: ["*.upstream.test"], resolver: resolver)
        try await withRuntime(permissions: Permissions(network: .allow(egress: policy))) { runtime in
            let gateway = try #require(runtime.sandbox.egress)
            let count = 20_000
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<8 {
                    group.addTask {
                        for index in stride(from: worker, to: count, by: 8) {
                            _ = await gateway.answer(Self.query(Self.longName(index)))
                        }
                    }
                }
                try await group.waitForAll()
            }
            // The names kept for the shared address are bounded (newest kept),
            // and connections to it still go through.
            let pinned = gateway.pinnedNames(for: Self.publicAddress)
            #expect(pinned.count == EgressGateway.maxNamesPerPin, "\(pinned.count) names pinned")
            let out = try await runtime.runGuest(
                EgressTests.program(
                    """
                    let ok = 0;
                    for (let i = 0; i < 10; i++) { const r = await fetch('http://api.upstream.test/'); await r.text(); ok++; }
                    const result = ok;
                    """))
            #expect(out.line == "10", "\(out)")
            #expect(gateway.pinnedNames(for: Self.publicAddress).last == "api.upstream.test")
        }
    }

    /// A guest refused in a loop makes distinct events without end: the hub
    /// keeps only the last second's (for deduplication) and publishes at most
    /// `maxPerWindow` a second, so neither memory nor the host's log grows
    /// with the guest's loop.
    @Test("a burst of distinct refusals is capped per second, and the hub keeps only the last second's")
    func refusalBurst() async throws {
        let policy = try EgressPolicy(allow: ["api.upstream.test"], resolver: .hosts(EgressUpstreams.names))
        try await withRuntime(permissions: Permissions(network: .allow(egress: policy))) { runtime in
            let gateway = try #require(runtime.sandbox.egress)
            let log = EventLog(runtime.egressEvents)
            defer { log.stop() }
            let started = ContinuousClock.now
            for index in 0..<5_000 { _ = await gateway.answer(Self.query("d\(index).denied.test")) }
            let elapsed = ContinuousClock.now - started
            try await Task.sleep(for: .milliseconds(200))
            let seconds = Int((elapsed / .seconds(1)).rounded(.up)) + 1
            // Per second: the cap, plus one summary of what was left out.
            #expect(log.count <= (EgressEventHub.maxPerWindow + 1) * seconds, "\(log.count) events in \(elapsed)")
            #expect(log.count >= 1)
            #expect(gateway.recentEventCount <= EgressEventHub.maxPerWindow)
        }
    }

    // MARK: - Careless host

    /// `0.0.0.0/0` reads as "any IPv4 address", and an IP rule unlocks special
    /// addresses: the guest reaches private networks, link-local (cloud
    /// metadata at 169.254.169.254) and the host's own addresses.
    @Test("a catch-all CIDR does not open private, link-local or host addresses")
    func catchAllCIDR() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let policy = try upstreams.policy(allow: ["0.0.0.0/0"])
        let out = try await withRuntime(permissions: Permissions(network: .allow(egress: policy))) { runtime in
            try await runtime.runGuest(
                EgressTests.program(
                    "const result = await code(fetch('http://\(EgressUpstreams.privateAddress)/').then((r) => r.json()));"))
        }
        #expect(out.line != #""ok""#, "0.0.0.0/0 let the guest reach \(EgressUpstreams.privateAddress): \(out)")
    }

    @Test("patterns that allow a whole top-level domain are refused")
    func topLevelWildcard() async throws {
        // A multi-label public suffix (`*.co.uk`) would need the public
        // suffix list, which SecureExec does not carry (README, "Egress").
        for pattern in ["*.com", "*.io", "*.dev."] {
            var refused = false
            do { _ = try EgressPolicy(allow: [pattern]) } catch { refused = true }
            #expect(refused, "\(pattern) is accepted")
        }
    }
}
