import Foundation
import SecureExec
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Egress by allow-list (README, "Egress"): guests reach allowed names
/// through the sandbox's DNS and the supervisor's gateway, and nothing else.
/// Upstreams run in a network namespace the test makes (`EgressUpstreams`);
/// runtimes dial out from it, with the test's names.
@Suite("Egress by allow-list", .needsRoot, .serialized, .timeLimit(.minutes(3)))
struct EgressTests {
    /// A guest program (ES module) printing one JSON line; `body` ends with a value `result`.
    static func program(_ body: String) -> String {
        """
        import http from 'node:http';
        import https from 'node:https';
        import net from 'node:net';
        import dns from 'node:dns';
        const get = (module, url, options = {}) => new Promise((resolve, reject) => {
          const request = module.get(url, options, (response) => {
            let body = '';
            const socket = response.socket;
            const certificate = socket.getPeerCertificate ? socket.getPeerCertificate() : null;
            const authorized = socket.authorized;
            response.on('data', (chunk) => body += chunk);
            response.on('end', () => resolve({ status: response.statusCode, body, certificate, authorized }));
            response.on('error', reject);
          });
          request.on('error', reject);
        });
        const echo = (host, port, text) => new Promise((resolve, reject) => {
          const socket = net.connect({ host, port }, () => socket.write(text));
          socket.once('data', (data) => { resolve(String(data)); socket.destroy(); });
          socket.on('error', (error) => reject(error));
        });
        const code = async (promise) => { try { await promise; return 'ok'; } catch (error) { return error.code ?? error.cause?.code ?? String(error); } };
        \(body)
        console.log(JSON.stringify(result));
        """
    }

    static let caEnvironment = ["NODE_EXTRA_CA_CERTS": "/workspace/ca.pem"]

    func withEgress<R: Sendable>(
        _ upstreams: EgressUpstreams, allow patterns: [String], maxConnections: Int = 256, maxBytes: Int? = nil,
        resolver: EgressResolver? = nil, _ body: (NodeRuntime, EventLog) async throws -> R
    ) async throws -> R {
        let policy = try upstreams.policy(
            allow: patterns, maxConnections: maxConnections, maxBytes: maxBytes,
            resolver: resolver ?? .hosts(EgressUpstreams.names))
        return try await withRuntime(permissions: Permissions(network: .allow(egress: policy))) { runtime in
            try await runtime.writeFile("/workspace/ca.pem", EgressUpstreams.caCertificate)
            let log = EventLog(runtime.egressEvents)
            defer { log.stop() }
            return try await body(runtime, log)
        }
    }

    @Test("fetch, http, https and net reach allowed names; TLS is the upstream's own, end to end")
    func allowedByName() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let out = try await withEgress(
            upstreams, allow: ["api.upstream.test", "secure.upstream.test", "api.upstream.test:7000"]
        ) { runtime, _ in
            try await runtime.runGuest(
                Self.program(
                    """
                    const fetched = await (await fetch('http://api.upstream.test/hello')).json();
                    const plain = await get(http, 'http://api.upstream.test/plain');
                    const secure = await get(https, 'https://secure.upstream.test/tls');
                    const echoed = await echo('api.upstream.test', 7000, 'ping');
                    const result = { fetched, plain: JSON.parse(plain.body), secure: JSON.parse(secure.body),
                      issuer: secure.certificate.issuer.CN, subject: secure.certificate.subject.CN, authorized: secure.authorized, echoed };
                    """), environment: Self.caEnvironment)
        }
        #expect(out.termination == .exited(0), "\(out)")
        let result = try #require(
            try JSONSerialization.jsonObject(with: Data(out.stdoutBytes)) as? [String: Any], "\(out)")
        let fetched = result["fetched"] as? [String: Any]
        #expect(fetched?["server"] as? String == "plain")
        #expect(fetched?["host"] as? String == "api.upstream.test")
        #expect((result["plain"] as? [String: Any])?["path"] as? String == "/plain")
        #expect((result["secure"] as? [String: Any])?["server"] as? String == "secure")
        // The guest verified the upstream's certificate itself, against the fixture CA: nothing in between.
        #expect(result["issuer"] as? String == "SecureExec test CA")
        #expect(result["subject"] as? String == "secure.upstream.test")
        #expect(result["authorized"] as? Bool == true)
        #expect(result["echoed"] as? String == "ping")
    }

    @Test("a name not on the list does not resolve (ENOTFOUND), is never asked of the host, and is reported")
    func nameNotAllowed() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let asked = AskedNames()
        let resolver = EgressResolver.custom { name in
            asked.add(name)
            return EgressUpstreams.names[name]?.compactMap(IPAddress.init) ?? []
        }
        let (out, events) = try await withEgress(upstreams, allow: ["api.upstream.test"], resolver: resolver) {
            runtime, log in
            let out = try await runtime.runGuest(
                Self.program(
                    """
                    const result = { other: await code(fetch('http://other.upstream.test/')),
                      lookup: await code(dns.promises.lookup('other.upstream.test')),
                      allowed: (await (await fetch('http://api.upstream.test/')).json()).server };
                    """))
            return (out, try await log.waitFor { $0.reason == .nameNotAllowed })
        }
        #expect(out.line == #"{"other":"ENOTFOUND","lookup":"ENOTFOUND","allowed":"plain"}"#, "\(out)")
        #expect(events.host == "other.upstream.test")
        #expect(!asked.names.contains("other.upstream.test"))
        #expect(asked.names.contains("api.upstream.test"))
    }

    @Test("a port not on the list is refused promptly and reported with the port")
    func portNotAllowed() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let (out, event) = try await withEgress(upstreams, allow: ["api.upstream.test"]) { runtime, log in
            let out = try await runtime.runGuest(
                Self.program(
                    """
                    const started = Date.now();
                    const result = { blocked: await code(fetch('http://api.upstream.test:8080/')),
                      fast: Date.now() - started < 5000,
                      allowed: (await (await fetch('http://api.upstream.test/')).json()).server };
                    """))
            return (out, try await log.waitFor { $0.reason == .portNotAllowed })
        }
        #expect(out.termination == .exited(0), "\(out)")
        #expect(out.line.contains(#""fast":true"#), "\(out)")
        #expect(out.line.contains(#""allowed":"plain""#), "\(out)")
        #expect(!out.line.contains(#""blocked":"ok""#), "\(out)")
        #expect(event.port == 8080)
        #expect(event.host == "api.upstream.test")
        #expect(event.address == EgressUpstreams.publicAddress)
    }

    @Test("a name resolving to a private address is denied unless an IP rule names it")
    func privateAddress() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let program = Self.program(
            "const result = await code(fetch('http://private.upstream.test/').then((r) => r.json()).then((j) => { if (j.server !== 'private') throw new Error(j.server); }));"
        )
        let (denied, event) = try await withEgress(upstreams, allow: ["private.upstream.test"]) { runtime, log in
            (try await runtime.runGuest(program), try await log.waitFor { $0.reason == .privateAddress })
        }
        #expect(denied.line == #""ENOTFOUND""#, "\(denied)")
        #expect(event.address == EgressUpstreams.privateAddress)
        #expect(event.host == "private.upstream.test")

        let allowed = try await withEgress(upstreams, allow: ["private.upstream.test", "10.1.2.0/24"]) { runtime, _ in
            try await runtime.runGuest(program)
        }
        #expect(allowed.line == #""ok""#, "\(allowed)")
    }

    @Test("an IP literal is checked against the IP rules")
    func ipLiteral() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let program = Self.program(
            "const result = await code(fetch('http://\(EgressUpstreams.publicAddress)/'));")
        let (denied, event) = try await withEgress(upstreams, allow: ["api.upstream.test"]) { runtime, log in
            (try await runtime.runGuest(program), try await log.waitFor { $0.reason == .addressNotAllowed })
        }
        #expect(denied.line != #""ok""#, "\(denied)")
        #expect(event.address == EgressUpstreams.publicAddress)
        #expect(event.port == 80)
        let allowed = try await withEgress(upstreams, allow: ["\(EgressUpstreams.publicAddress):80"]) { runtime, _ in
            try await runtime.runGuest(program)
        }
        #expect(allowed.line == #""ok""#, "\(allowed)")
    }

    @Test("an answer that changes between checks cannot switch a connection's target")
    func rebinding() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let before = try upstreams.accepted()
        // The first answer is public, every later one private: a rebinding resolver.
        let asked = AskedNames()
        let resolver = EgressResolver.custom { name in
            asked.add(name)
            let first = asked.names.filter { $0 == name }.count == 1
            return [IPAddress(first ? EgressUpstreams.publicAddress : EgressUpstreams.privateAddress)!]
        }
        let (out, event) = try await withEgress(upstreams, allow: ["api.upstream.test"], resolver: resolver) {
            runtime, log in
            let out = try await runtime.runGuest(
                Self.program(
                    """
                    const first = (await dns.promises.lookup('api.upstream.test', { family: 4 })).address;
                    const second = await code(dns.promises.lookup('api.upstream.test', { family: 4 }));
                    // Connects to the first answer, as a client caching it would, and to the private address directly.
                    const reached = JSON.parse((await get(http, `http://${first}/`, { headers: { host: 'api.upstream.test' } })).body).server;
                    const direct = await code(fetch('http://\(EgressUpstreams.privateAddress)/'));
                    const result = { first, second, reached, direct };
                    """))
            return (out, try await log.waitFor { $0.reason == .privateAddress })
        }
        #expect(out.termination == .exited(0), "\(out)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(out.stdoutBytes)) as? [String: String])
        #expect(result["first"] == EgressUpstreams.publicAddress)
        #expect(result["second"] == "ENOTFOUND")
        #expect(result["reached"] == "plain")
        #expect(result["direct"] != "ok")
        #expect(event.address == EgressUpstreams.privateAddress)
        let after = try upstreams.accepted()
        #expect(after["private", default: 0] == before["private", default: 0], "the private server saw a connection")
    }

    @Test("setEgress revokes a host mid-run: its open connection closes, new ones are refused, both reported")
    func revokeWhileRunning() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        try await withEgress(upstreams, allow: ["api.upstream.test:7000", "secure.upstream.test"]) { runtime, log in
            let guest = try await runtime.startGuest(
                Self.program(
                    """
                    const socket = net.connect({ host: 'api.upstream.test', port: 7000 }, () => socket.write('ping'));
                    socket.once('data', (data) => console.log('open ' + data));
                    const closed = await new Promise((resolve) => {
                      socket.on('error', (error) => resolve(error.code));
                      socket.on('close', () => resolve('closed'));
                    });
                    console.log(closed);
                    const result = { again: await code(echo('api.upstream.test', 7000, 'x')) };
                    """))
            try await guest.stdout.waitUntilContains("open ping", timeout: .seconds(20))
            try await runtime.setEgress(try upstreams.policy(allow: ["secure.upstream.test"]))
            let revoked = try await log.waitFor { $0.reason == .revoked }
            #expect(revoked.port == 7000)
            #expect(revoked.address == EgressUpstreams.publicAddress)
            let out = try await guest.finish()
            #expect(out.termination == .exited(0), "\(out)")
            let lines = out.stdout.split(separator: "\n").map(String.init)
            #expect(lines.count == 3, "\(out)")
            #expect(lines.last == #"{"again":"ENOTFOUND"}"#, "\(out)")
            #expect(runtime.egressPolicy?.rules.count == 1)
        }
    }

    @Test("the connection cap refuses the connection past it and says so")
    func connectionCap() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let (out, event) = try await withEgress(upstreams, allow: ["api.upstream.test:7000"], maxConnections: 2) {
            runtime, log in
            let out = try await runtime.runGuest(
                Self.program(
                    """
                    const open = (text) => new Promise((resolve, reject) => {
                      const socket = net.connect({ host: 'api.upstream.test', port: 7000 }, () => socket.write(text));
                      socket.once('data', () => resolve(socket));
                      socket.on('error', reject);
                    });
                    const first = await open('a');
                    const second = await open('b');
                    const third = await code(open('c'));
                    first.destroy();
                    await new Promise((resolve) => setTimeout(resolve, 200));
                    const fourth = await code(open('d').then((socket) => socket.destroy()));
                    second.destroy();
                    const result = { third, fourth };
                    """))
            return (out, try await log.waitFor { $0.reason == .connectionLimit })
        }
        #expect(out.termination == .exited(0), "\(out)")
        #expect(!out.line.contains(#""third":"ok""#), "\(out)")
        #expect(out.line.contains(#""fourth":"ok""#), "a closed connection frees its place: \(out)")
        #expect(event.port == 7000)
    }

    @Test("the byte cap ends transfers past it and says so")
    func byteCap() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let (out, _) = try await withEgress(upstreams, allow: ["api.upstream.test"], maxBytes: 256 << 10) {
            runtime, log in
            let out = try await runtime.runGuest(
                Self.program(
                    """
                    const small = await code(fetch('http://api.upstream.test/bytes?n=1000').then((r) => r.arrayBuffer()));
                    const large = await code(fetch('http://api.upstream.test/bytes?n=4000000').then((r) => r.arrayBuffer()));
                    const after = await code(fetch('http://api.upstream.test/'));
                    const result = { small, large, after };
                    """))
            return (out, try await log.waitFor { $0.reason == .byteLimit })
        }
        #expect(out.termination == .exited(0), "\(out)")
        #expect(out.line.hasPrefix(#"{"small":"ok""#), "\(out)")
        #expect(!out.line.contains(#""large":"ok""#), "\(out)")
        #expect(!out.line.contains(#""after":"ok""#), "\(out)")
    }

    @Test("200 concurrent outbound requests from 4 runtimes, no errors")
    func concurrentRuntimes() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let results = try await withThrowingTaskGroup(of: FinishedGuest.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    try await withEgress(upstreams, allow: ["api.upstream.test"]) { runtime, _ in
                        try await runtime.runGuest(
                            Self.program(
                                """
                                const all = await Promise.allSettled(Array.from({ length: 50 }, (_, i) =>
                                  fetch(`http://api.upstream.test/${i}`).then((r) => r.json()).then((j) => j.path === `/${i}`)));
                                const result = all.filter((r) => r.status === 'fulfilled' && r.value).length;
                                """))
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        for out in results { #expect(out.line == "50", "\(out)") }
    }

    @Test("a guest's own choice of DNS server still asks the sandbox's, and IPv6 goes out too")
    func hardcodedResolverAndIPv6() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let out = try await withEgress(upstreams, allow: ["api.upstream.test", "v6.upstream.test"]) { runtime, _ in
            try await runtime.runGuest(
                Self.program(
                    """
                    const resolver = new dns.promises.Resolver();
                    resolver.setServers(['8.8.8.8']);
                    const viaOwnServer = await resolver.resolve4('api.upstream.test');
                    const v6 = (await (await fetch('http://v6.upstream.test/')).json()).server;
                    const result = { viaOwnServer, v6 };
                    """))
        }
        #expect(out.line == #"{"viaOwnServer":["203.0.113.10"],"v6":"plain-v6"}"#, "\(out)")
    }

    @Test("with egress, the host still reaches a guest's server (fetch, expose), and the guest's own loopback stays its own")
    func serverStillReachable() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        try await withEgress(upstreams, allow: ["api.upstream.test"]) { runtime, _ in
            let server = try await runtime.startGuest(
                """
                const http = require('node:http');
                http.createServer(async (request, response) => {
                  // The server calls out (egress) and into itself (its own loopback) for each request.
                  const upstream = (await (await fetch('http://api.upstream.test/')).json()).server;
                  const self = request.url === '/outer'
                    ? await (await fetch('http://127.0.0.1:3000/inner')).text() : 'inner';
                  response.end(`${upstream} ${self}`);
                }).listen(3000, () => console.log('listening'));
                """)
            try await server.stdout.waitUntilContains("listening")
            let page = try await runtime.fetch(3000, path: "/outer", timeout: .seconds(10))
            #expect(page.bodyText == "plain plain inner", "\(page)")
            let exposed = try await runtime.expose(3000)
            let client = try await HostSocket.connect(port: exposed.port)
            defer { client.close() }
            try await client.send("GET /outer HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            let response = String(decoding: try await client.receive(through: "inner"), as: UTF8.self)
            #expect(response.hasPrefix("HTTP/1.1 200") && response.hasSuffix("plain plain inner"), "\(response)")
            await exposed.close()
        }
    }

    @Test("dispose closes every outbound connection and the gateway")
    func disposeClosesEverything() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let policy = try upstreams.policy(allow: ["api.upstream.test"])
        let runtime = try await NodeRuntime.create(permissions: Permissions(network: .allow(egress: policy)))
        let guest = try await runtime.startGuest(
            """
            for (let i = 0; i < 5; i++) fetch('http://api.upstream.test/hold').catch(() => {});
            setInterval(() => {}, 1000);
            console.log('holding');
            """)
        try await guest.stdout.waitUntilContains("holding")
        let gateway = try #require(runtime.sandbox.egress)
        #expect(await poll(for: .seconds(10)) { gateway.openConnections == 5 })
        await runtime.dispose()
        #expect(gateway.openConnections == 0)
        // The event sequence of a disposed runtime ends at once, with nothing in it.
        let events = runtime.egressEvents
        let ended = await finishes(within: .seconds(5)) {
            for await event in events { Issue.record("an event after dispose: \(event)") }
        }
        #expect(ended, "egressEvents did not end after dispose")
    }

    @Test("bad policies are refused before anything is made, and setEgress needs an egress runtime")
    func badInput() async throws {
        for pattern in ["", "*", "exa mple.com", "api.example.com:0", "api.example.com:70000", "10.0.0.0/33"] {
            await expectError(.invalidArgument, "\(pattern.debugDescription)") { try EgressPolicy(allow: [pattern]) }
        }
        await expectError(.invalidArgument, mentioning: "outboundNetworkNamespace") {
            let policy = EgressPolicy(outboundNetworkNamespace: "/nonexistent/netns")
            return try await NodeRuntime.create(permissions: Permissions(network: .allow(egress: policy)))
        }
        await expectError(.invalidArgument, mentioning: "outboundNetworkNamespace") {
            let policy = EgressPolicy(outboundNetworkNamespace: "/proc/self/ns/mnt")
            return try await NodeRuntime.create(permissions: Permissions(network: .allow(egress: policy)))
        }
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            await expectError(.invalidArgument, mentioning: "without egress") {
                try await runtime.setEgress(EgressPolicy())
            }
            #expect(runtime.egressPolicy == nil)
        }
    }
}

/// Names a custom resolver was asked for, in order.
final class AskedNames: Sendable {
    private let list = Mutex<[String]>([])
    func add(_ name: String) { list.withLock { $0.append(name) } }
    var names: [String] { list.withLock { $0 } }
}

/// Collects a runtime's egress events in the background.
final class EventLog: Sendable {
    private let events = AskedEvents()
    private let task: Mutex<Task<Void, Never>?> = Mutex(nil)

    init(_ sequence: EgressEvents) {
        let task = Task { [events] in
            for await event in sequence { events.add(event) }
        }
        self.task.withLock { $0 = task }
    }

    /// The first event matching `predicate`, waiting up to 10 s for it.
    func waitFor(_ predicate: @escaping @Sendable (EgressEvent) -> Bool) async throws -> EgressEvent {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let found = events.all.first(where: predicate) { return found }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw EventMissing(seen: events.all)
    }

    func stop() { task.withLock { $0?.cancel() } }

    /// How many events arrived so far.
    var count: Int { events.all.count }
}

final class AskedEvents: Sendable {
    private let list = Mutex<[EgressEvent]>([])
    func add(_ event: EgressEvent) { list.withLock { $0.append(event) } }
    var all: [EgressEvent] { list.withLock { $0 } }
}

struct EventMissing: Error, CustomStringConvertible {
    let seen: [EgressEvent]
    var description: String { "no matching egress event within 10 s; saw \(seen)" }
}
