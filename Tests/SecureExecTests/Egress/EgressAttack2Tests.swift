import Foundation
@testable import SecureExec
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A second security review of egress (issue 15), after the first round of
/// fixes: each test states what should hold and fails on the code as
/// reviewed. See the review report for root causes and suggested fixes.
@Suite("Egress attacks, second pass", .needsRoot, .serialized, .timeLimit(.minutes(5)))
struct EgressAttack2Tests {
    // MARK: - Hostile guest

    /// `maxQueriesInFlight` (64) is meant to bound the resolutions one runtime
    /// has going at once. But the slot is given back when the 5 s resolve
    /// timeout fires, while the resolution itself runs on (a `getaddrinfo`
    /// cannot be interrupted; a resolver may ignore cancellation): every 5 s
    /// a guest gets 64 more. With `.system` and a slow or black-holed
    /// upstream DNS each one is a Dispatch thread blocked in getaddrinfo, and
    /// `DispatchQueue.global()` is what every runtime's `Blocking.run` uses.
    @Test("resolutions still running after the resolve timeout count against the in-flight cap")
    func resolutionsOutliveTheCap() async throws {
        let resolver = HangingResolver()
        let policy = try EgressPolicy(allow: ["*.upstream.test"], resolver: .custom { name in await resolver.resolve(name) })
        defer { resolver.releaseAll() }
        let out = try await withRuntime(permissions: Permissions(network: .allow(egress: policy))) { runtime in
            try await runtime.runGuest(
                """
                import dgram from 'node:dgram';
                const query = (id, name) => {
                  const labels = name.split('.').flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]);
                  return Buffer.concat([Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
                    ...labels, Buffer.from([0, 0, 1, 0, 1])]);
                };
                const socket = dgram.createSocket('udp4');
                let answered = 0;
                socket.on('message', () => answered++);
                for (let round = 0; round < 4; round++) {
                  for (let i = 0; i < 64; i++) socket.send(query(round * 64 + i, `r${round}-n${i}.upstream.test`), 53, '127.0.0.1');
                  await new Promise((resolve) => setTimeout(resolve, 5600));
                }
                console.log(answered);
                socket.close();
                """)
        }
        let started = resolver.started
        print("resolutionsOutliveTheCap: \(started) resolutions running at once; guest: \(out)")
        #expect(out.termination == .exited(0), "\(out)")
        #expect(
            started <= EgressGateway.maxQueriesInFlight,
            "\(started) resolutions were running at once, past the cap of \(EgressGateway.maxQueriesInFlight)")
    }

    /// Events are capped at 100 distinct ones a second per runtime, and past
    /// the cap they are dropped without a trace. A guest that asks for
    /// distinct denied names in a loop fills the quota, so the host's own
    /// `setEgress` revocation (and any other refusal the guest wants to hide)
    /// is never reported, and nothing says events were dropped.
    @Test("a guest's flood of distinct denials does not hide a revocation from the host")
    func floodHidesRevocation() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let policy = try upstreams.policy(allow: ["api.upstream.test:7000", "secure.upstream.test"])
        try await withRuntime(permissions: Permissions(network: .allow(egress: policy))) { runtime in
            let log = EventLog(runtime.egressEvents)
            defer { log.stop() }
            let seen = Atomic<Int>(0)
            let counter = Task { for await _ in runtime.egressEvents { seen.add(1, ordering: .relaxed) } }
            defer { counter.cancel() }
            let guest = try await runtime.startGuest(
                """
                import dgram from 'node:dgram';
                import net from 'node:net';
                const query = (id, name) => {
                  const labels = name.split('.').flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]);
                  return Buffer.concat([Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
                    ...labels, Buffer.from([0, 0, 1, 0, 1])]);
                };
                const held = net.connect({ host: 'api.upstream.test', port: 7000 }, () => held.write('ping'));
                held.on('error', () => {});
                await new Promise((resolve) => held.once('data', resolve));
                console.log('open');
                const socket = dgram.createSocket('udp4');
                socket.on('message', () => {});
                const deadline = Date.now() + 15000;
                let n = 0;
                while (Date.now() < deadline) {
                  for (let i = 0; i < 50; i++, n++) socket.send(query(n & 0xffff, `d${n}.denied.test`), 53, '127.0.0.1');
                  await new Promise((resolve) => setTimeout(resolve, 5));
                }
                console.log('sent ' + n);
                socket.close();
                """, stdoutKeep: 4096)
            try await guest.stdout.waitUntilContains("open", timeout: .seconds(20))
            // Let the flood fill the window, then revoke the held connection.
            try await Task.sleep(for: .seconds(2))
            try await runtime.setEgress(try upstreams.policy(allow: ["secure.upstream.test"]))
            var revoked: EgressEvent?
            do { revoked = try await log.waitFor { $0.reason == .revoked } } catch {}
            let denials = seen.load(ordering: .relaxed)
            let out = try await guest.finish()
            print("floodHidesRevocation: \(denials) events seen; guest: \(out.stdout)")
            #expect(revoked != nil, "the revocation was never reported while the guest flooded (\(denials) events seen)")
        }
    }

    // MARK: - Careless host

    /// `namesSpecialSpace` trusts a network's two ends: both special and of
    /// one class means "every address between is too". Outside 2000::/3
    /// every IPv6 address is `.reserved`, except the forms that embed an IPv4
    /// address, which take that address's class. So `64:ff9a::/31` (or
    /// `40::/10`, `64::/16`) starts and ends in reserved space, is taken to
    /// name it, and opens the whole NAT64 prefix 64:ff9b::/96 inside it: the
    /// translated loopback, private and metadata (169.254.169.254) addresses
    /// that the classifier itself calls special. On a NAT64 host (an
    /// IPv6-only cloud subnet) those reach the IPv4 addresses they embed.
    @Test(
        "a rule whose ends are reserved IPv6 does not open the NAT64 forms of loopback, private or metadata addresses",
        arguments: ["[64:ff9a::/31]:80", "[40::/10]:80", "[64::/16]:80"])
    func reservedEndsSpanEmbeddedSpecial(_ pattern: String) throws {
        let policy = try EgressPolicy(allow: [pattern])
        let network = try #require({ if case .network(let n) = policy.rules[0].target { return n } else { return nil } }())
        for embedded in ["64:ff9b::169.254.169.254", "64:ff9b::127.0.0.1", "64:ff9b::10.1.2.3"] {
            let address = try #require(IPAddress(embedded))
            #expect(network.contains(address))
            #expect(classify(address, hostAddresses: []) != .reserved, "\(embedded) is classified by what it embeds")
            let decision = policy.connectionDecision(address: address, port: 80, pinnedNames: [], hostAddresses: [])
            #expect(!decision.allowed, "\(pattern) opens \(embedded) (\(classify(address, hostAddresses: [])))")
        }
    }

    /// serve reads `--allow-hosts-file` again on SIGHUP with a blocking
    /// `String(contentsOfFile:)` inside a `Task`, on Swift's cooperative pool
    /// (one thread per core). A FIFO there could park those threads in
    /// open(2). This one HOLDS (a regression guard, not a finding):
    /// Foundation refuses a non-regular file ("cannot read"), the policy in
    /// force stays, and a fixed file is applied on the next SIGHUP.
    @Test("serve: an allow-hosts file replaced by a FIFO does not wedge reloads or shutdown")
    func hostsFileBecomesFIFO() async throws {
        try await withHostDirectory { directory in
            let file = directory + "/hosts.txt"
            let server = directory + "/server.js"
            try HostFiles.write(file, "localhost\n")
            try HostFiles.write(
                server,
                "require('node:http').createServer((q, r) => r.end('up')).listen(3000, '127.0.0.1');\n")
            let program = try HostProgram(
                PackagePaths.product("secure-exec"),
                arguments: ["serve", server, "--port", "3000", "--allow-hosts-file", file])
            defer {
                program.stop()
                HostCensus.removeCgroups(ofSupervisors: [program.pid])
            }
            try await program.stderr.waitUntilContains("ready", timeout: .seconds(30))

            // A careless host (or another user with write access to the directory) swaps the file for a FIFO.
            unlink(file)
            #expect(mkfifo(file, 0o644) == 0)
            for _ in 0..<(ProcessInfo.processInfo.activeProcessorCount + 2) {
                kill(program.pid, SIGHUP)
                try await Task.sleep(for: .milliseconds(300))
            }
            // Fixed again: the next SIGHUP should apply it.
            unlink(file)
            try HostFiles.write(file, "localhost\nexample.com\n")
            kill(program.pid, SIGHUP)
            var reloaded = true
            do {
                try await program.stderr.waitUntilContains("egress policy reloaded: 2 rule(s)", timeout: .seconds(10))
            } catch { reloaded = false }
            #expect(reloaded, "the fixed file was never applied: \(program.stderr.text)")

            kill(program.pid, SIGINT)
            var status: Int32?
            do { status = try await program.waitForExit(timeout: .seconds(15)).0 } catch {}
            #expect(status == 0, "serve did not stop on SIGINT after the FIFO reloads: \(program.stderr.text)")
        }
    }
}

/// A resolver that, like getaddrinfo against a black-holed DNS server, does
/// not return and cannot be cancelled, until `releaseAll()`.
final class HangingResolver: Sendable {
    private let state = Mutex<(started: Int, waiting: [CheckedContinuation<Void, Never>], released: Bool)>((0, [], false))

    /// Calls begun so far (none returns before `releaseAll`).
    var started: Int { state.withLock { $0.started } }

    func resolve(_ name: String) async -> [IPAddress] {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                state.started += 1
                if state.released { return true }
                state.waiting.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
        return []
    }

    func releaseAll() {
        let waiting = state.withLock { state in
            state.released = true
            defer { state.waiting = [] }
            return state.waiting
        }
        waiting.forEach { $0.resume() }
    }
}
