import Foundation
@testable import SecureExec
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A security review of egress (issue 15): each test here states what should
/// hold and fails on the code as reviewed. See the review report for the
/// root causes and suggested fixes.
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

    /// DNS over TCP reads queries without end and writes every answer, with
    /// no regard for whether the guest reads them: a guest that pipelines
    /// queries and never reads makes the supervisor buffer the answers.
    @Test("a guest that sends DNS-over-TCP queries and never reads the answers does not grow the supervisor's memory")
    func dnsStreamUnreadAnswers() async throws {
        let policy = try EgressPolicy(allow: ["api.upstream.test"], resolver: .hosts(EgressUpstreams.names))
        try await withRuntime(permissions: Permissions(network: .allow(egress: policy))) { runtime in
            let watch = ResidentMemoryWatch.sampling()
            let out = try await runtime.runGuest(
                """
                import net from 'node:net';
                import { once } from 'node:events';
                const name = 'x'.repeat(60) + '.' + 'y'.repeat(60) + '.' + 'z'.repeat(60) + '.denied.test';
                const query = (id) => {
                  const labels = name.split('.').flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]);
                  const body = Buffer.concat([Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
                    ...labels, Buffer.from([0, 0, 1, 0, 1])]);
                  const length = Buffer.alloc(2); length.writeUInt16BE(body.length);
                  return Buffer.concat([length, body]);
                };
                const socket = net.connect({ host: '127.0.0.1', port: 53 });
                await once(socket, 'connect');
                socket.pause(); // never read an answer
                // The server may stop reading (backpressure) and close an idle stream: both end the flood.
                socket.on('error', () => {});
                const writable = () => new Promise((resolve) => { socket.once('drain', resolve); socket.once('close', resolve); });
                const chunk = Buffer.concat(Array.from({ length: 32 }, (_, i) => query(i)));
                let sent = 0;
                const deadline = Date.now() + 30000;
                while (sent < 3 * 1024 * 1024 * 1024 && Date.now() < deadline && !socket.destroyed) {
                  if (!socket.write(chunk)) await writable();
                  sent += chunk.length;
                  if ((sent / chunk.length) % 8 === 0) await new Promise((r) => setImmediate(r));
                }
                console.log(sent);
                await new Promise((r) => setTimeout(r, 1000));
                process.exit(0);
                """)
            await watch.stop()
            let grown = watch.peak - watch.start
            print("dnsStreamUnreadAnswers: guest sent \(out.line) bytes; supervisor RSS grew \(grown >> 20) MiB")
            #expect(out.termination == .exited(0), "\(out)")
            #expect(grown < 64 << 20, "the supervisor's memory grew by \(grown >> 20) MiB")
        }
    }

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
            let watch = ResidentMemoryWatch()
            let count = 200_000
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
            let grown = watch.sample() - watch.start
            let started = ContinuousClock.now
            let out = try await runtime.runGuest(
                EgressTests.program(
                    """
                    let ok = 0;
                    for (let i = 0; i < 10; i++) { const r = await fetch('http://api.upstream.test/'); await r.text(); ok++; }
                    const result = ok;
                    """))
            let elapsed = ContinuousClock.now - started
            print("pinNamesUnbounded: RSS grew \(grown >> 20) MiB for \(count) names; 10 fetches took \(elapsed)")
            #expect(out.line == "10", "\(out)")
            // Memory (151 MiB for 200,000 names when run alone) is not asserted: RSS reuse after other tests hides it.
            #expect(elapsed < .seconds(1), "10 fetches to the shared address took \(elapsed)")
        }
    }

    /// The event hub's dedupe map is filtered in full on every event once it
    /// holds more than 256 recent ones: distinct refusals in a burst cost
    /// O(n) each, O(n²) in all, on the cooperative pool every runtime shares.
    @Test("distinct refusals in a burst cost linear time, not quadratic")
    func dedupeQuadratic() async throws {
        let policy = try EgressPolicy(allow: ["api.upstream.test"], resolver: .hosts(EgressUpstreams.names))
        try await withRuntime(permissions: Permissions(network: .allow(egress: policy))) { runtime in
            let gateway = try #require(runtime.sandbox.egress)
            func burst(_ count: Int, offset: Int) async -> Duration {
                let started = ContinuousClock.now
                for index in 0..<count { _ = await gateway.answer(Self.query("d\(offset + index).denied.test")) }
                return ContinuousClock.now - started
            }
            // Warm up, then let the window pass.
            _ = await burst(200, offset: 0)
            try await Task.sleep(for: .seconds(1.2))
            let small = await burst(2_000, offset: 1_000_000)
            try await Task.sleep(for: .seconds(1.2))
            let large = await burst(20_000, offset: 2_000_000)
            print("dedupeQuadratic: 2,000 refusals took \(small), 20,000 took \(large)")
            // Linear would be about 10x; allow 30x.
            #expect(large < small * 30, "2,000 refusals took \(small), 20,000 took \(large)")
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
