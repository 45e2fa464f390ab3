import BenchmarkWorkloads
import Foundation
import SecureExec

#if canImport(Glibc)
import Glibc
#endif

/// The same dev server running bare on the host, under bwrap and in SecureExec.
struct Servers {
    var barePort: Int
    var bare: HostProcess
    /// The outer bwrap process, and a process inside its network namespace.
    var bwrap: HostProcess?
    var bwrapNamespacePID: pid_t?
    var runtime: NodeRuntime
    var server: GuestProcess
    var initPID: pid_t
}

extension Comparison {
    func startServers() async throws -> Servers {
        let entry = try host.writeEntry(GuestScripts.devServer, name: "server.js")
        let port = try freePort()
        let bare = try HostProcess(host.bareArguments(entry: entry), environment: host.environment(["PORT": "\(port)"], home: bareHome))
        _ = try bare.waitForOutput(GuestScripts.listeningLine)
        var bwrap: HostProcess?
        var namespacePID: pid_t?
        if hasBwrap {
            let process = try HostProcess(
                try host.bwrapArguments(entry: entry), environment: host.environment(["PORT": "3000"], home: "/workspace"))
            _ = try process.waitForOutput(GuestScripts.listeningLine)
            // bwrap's own PID 1 of the sandbox is the outer bwrap's only child.
            guard let inner = HostCensus.children(of: process.pid).first else {
                throw BenchmarkFailure("bwrap has no child in its namespaces")
            }
            bwrap = process
            namespacePID = inner
        }
        let inits = Set(HostCensus.sandboxInits())
        let (runtime, server) = try await SecureExecRuns.serving()
        guard let initPID = HostCensus.sandboxInits().first(where: { !inits.contains($0) }) else {
            throw BenchmarkFailure("could not find the new sandbox's init among this process's children")
        }
        return Servers(
            barePort: port, bare: bare, bwrap: bwrap, bwrapNamespacePID: namespacePID, runtime: runtime, server: server,
            initPID: initPID)
    }

    func stopServers(_ servers: Servers) async {
        servers.bare.stop()
        servers.bwrap?.stop()
        await servers.runtime.dispose()
    }

    /// `count` timed GETs of /health with the plain NIO client on a socket
    /// to 127.0.0.1:`port` in the network namespace of `pid` (nil: the host's).
    func nioLatencies(port: Int, namespaceOf pid: pid_t?, count: Int) async throws -> Samples {
        let socket = try LoopbackDialer.connect(port: port, inNetworkNamespaceOf: pid)
        return try await NIOHTTPClient.withConnection(socket: socket) { connection in
            for _ in 0..<10 { _ = try await connection.get("/health") }
            var samples = Samples()
            for _ in 0..<count {
                let start = monotonicNanos()
                let status = try await connection.get("/health")
                samples.add(Double(monotonicNanos() - start) / 1000)
                guard status == 200 else { throw BenchmarkFailure("GET /health answered \(status)") }
            }
            return samples
        }
    }

    func rawLatencies(port: Int, namespaceOf pid: pid_t?, count: Int) throws -> Samples {
        let client = RawHTTPClient(socket: try LoopbackDialer.connect(port: port, inNetworkNamespaceOf: pid))
        for _ in 0..<10 { _ = try client.get("/health") }
        var samples = Samples()
        for _ in 0..<count {
            let start = monotonicNanos()
            let status = try client.get("/health")
            samples.add(Double(monotonicNanos() - start) / 1000)
            guard status == 200 else { throw BenchmarkFailure("GET /health answered \(status)") }
        }
        return samples
    }

    func fetchLatencies(_ runtime: NodeRuntime, count: Int) async throws -> Samples {
        for _ in 0..<10 { _ = try await runtime.fetch(3000, path: "/health") }
        var samples = Samples()
        for _ in 0..<count {
            let start = monotonicNanos()
            let response = try await runtime.fetch(3000, path: "/health")
            samples.add(Double(monotonicNanos() - start) / 1000)
            guard response.status == 200 else { throw BenchmarkFailure("fetch /health answered \(response.status)") }
        }
        return samples
    }

    /// Requests per second with `connections` concurrent clients, each sending `each` requests.
    func concurrentRate(connections: Int, each: Int, _ client: @escaping @Sendable () async throws -> Void) async throws -> Double {
        let start = monotonicNanos()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<connections {
                group.addTask { for _ in 0..<each { try await client() } }
            }
            try await group.waitForAll()
        }
        return Double(connections * each) / (Double(monotonicNanos() - start) / 1e9)
    }

    /// Fetch latency and rate, and expose throughput, on one set of servers.
    func network() async throws {
        let servers = try await startServers()
        do {
            try await fetchComparison(servers)
            if hasWrk {
                try await exposeComparison(servers)
            } else {
                notes.append("wrk is not installed: the expose throughput rows were skipped (make bench-deps installs it).")
            }
        } catch {
            await stopServers(servers)
            throw error
        }
        await stopServers(servers)
    }

    func fetchComparison(_ servers: Servers) async throws {
        let count = options.requestsPerRound
        var nioBare = Samples(), nioBwrap = Samples(), nioSandbox = Samples(), fetch = Samples()
        var rawBare = Samples(), rawBwrap = Samples(), rawSandbox = Samples()
        var sequentialBare = Samples(), sequentialFetch = Samples()
        for round in 0..<options.fetchRounds {
            for contender in rotated(["nio-bare", "nio-bwrap", "nio-sandbox", "fetch", "raw-bare", "raw-bwrap", "raw-sandbox"], by: round) {
                switch contender {
                case "nio-bare":
                    let samples = try await nioLatencies(port: servers.barePort, namespaceOf: nil, count: count)
                    nioBare.add(contentsOf: samples)
                    sequentialBare.add(Double(samples.count) / (samples.values.reduce(0, +) / 1e6))
                case "nio-bwrap":
                    if let pid = servers.bwrapNamespacePID { nioBwrap.add(contentsOf: try await nioLatencies(port: 3000, namespaceOf: pid, count: count)) }
                case "nio-sandbox": nioSandbox.add(contentsOf: try await nioLatencies(port: 3000, namespaceOf: servers.initPID, count: count))
                case "fetch":
                    let samples = try await fetchLatencies(servers.runtime, count: count)
                    fetch.add(contentsOf: samples)
                    sequentialFetch.add(Double(samples.count) / (samples.values.reduce(0, +) / 1e6))
                case "raw-bare": rawBare.add(contentsOf: try rawLatencies(port: servers.barePort, namespaceOf: nil, count: count))
                case "raw-bwrap":
                    if let pid = servers.bwrapNamespacePID { rawBwrap.add(contentsOf: try rawLatencies(port: 3000, namespaceOf: pid, count: count)) }
                case "raw-sandbox": rawSandbox.add(contentsOf: try rawLatencies(port: 3000, namespaceOf: servers.initPID, count: count))
                default: break
                }
            }
        }
        rows.append(
            ComparisonRow(
                workload: "fetch latency, GET /health kept alive (SecureExec: runtime.fetch; bare/bwrap: plain NIO client)",
                unit: "µs", better: .lower, bare: nioBare, bwrap: hasBwrap ? nioBwrap : nil, secureExec: fetch))
        rows.append(
            ComparisonRow(
                workload: "  plain NIO client on a socket in each namespace (SecureExec: its sandbox's netns)", unit: "µs",
                better: .lower, bare: nioBare, bwrap: hasBwrap ? nioBwrap : nil, secureExec: nioSandbox))
        rows.append(
            ComparisonRow(
                workload: "  raw blocking-socket client in each namespace (kernel path + node)", unit: "µs", better: .lower,
                bare: rawBare, bwrap: hasBwrap ? rawBwrap : nil, secureExec: rawSandbox))
        rows.append(
            ComparisonRow(
                workload: "fetches per second, one at a time (SecureExec: runtime.fetch; bare: plain NIO client)",
                unit: "req/s", better: .higher, bare: sequentialBare, bwrap: nil, secureExec: sequentialFetch))

        // Many at once: 16 concurrent requesters on one runtime vs 16 NIO connections to the host server.
        let concurrency = options.smoke ? 2 : 16
        let each = options.smoke ? 2 : 100
        var concurrentBare = Samples(), concurrentFetch = Samples()
        let runtime = servers.runtime
        // Warm the runtime's pool to `concurrency` connections, as the NIO side connects before its clock.
        _ = try await concurrentRate(connections: concurrency, each: 2) { _ = try await runtime.fetch(3000, path: "/health") }
        let port = servers.barePort
        for round in 0..<(options.smoke ? 1 : 3) {
            for contender in rotated(["bare", "fetch"], by: round) {
                if contender == "bare" {
                    // Connected before the clock starts, as the runtime's pool is warm after the first round.
                    let sockets = try (0..<concurrency).map { _ in try LoopbackDialer.connect(port: port) }
                    let start = monotonicNanos()
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for socket in sockets {
                            group.addTask {
                                try await NIOHTTPClient.withConnection(socket: socket) { connection in
                                    for _ in 0..<each { _ = try await connection.get("/health") }
                                }
                            }
                        }
                        try await group.waitForAll()
                    }
                    concurrentBare.add(Double(concurrency * each) / (Double(monotonicNanos() - start) / 1e9))
                } else {
                    concurrentFetch.add(
                        try await concurrentRate(connections: concurrency, each: each) {
                            _ = try await runtime.fetch(3000, path: "/health")
                        })
                }
            }
        }
        rows.append(
            ComparisonRow(
                workload: "fetches per second, \(concurrency) concurrent (bare: \(concurrency) kept-alive NIO connections)",
                unit: "req/s", better: .higher, bare: concurrentBare, bwrap: nil, secureExec: concurrentFetch))
        let ratio = fetch.median / nioBare.median
        goals.append(
            GoalOutcome(
                goal: "fetch latency within 1.10 of the same client against the same server on the host's loopback",
                holds: ratio <= 1.10,
                evidence: String(
                    format: "runtime.fetch %.0f µs vs plain NIO client on host loopback %.0f µs (%.2f×); the same NIO client into the sandbox's netns: %.0f µs (%.2f×)",
                    fetch.median, nioBare.median, ratio, nioSandbox.median, nioSandbox.median / nioBare.median)))
    }

    func exposeComparison(_ servers: Servers) async throws {
        let exposed = try await servers.runtime.expose(3000)
        var direct: [WrkResult] = []
        var throughExpose: [WrkResult] = []
        let seconds = options.wrkSeconds
        for round in 0..<options.wrkRounds {
            for contender in rotated(["direct", "expose"], by: round) {
                if contender == "direct" {
                    direct.append(try Wrk.run(url: "http://127.0.0.1:\(servers.barePort)/", seconds: seconds))
                } else {
                    throughExpose.append(try Wrk.run(url: exposed.url, seconds: seconds))
                }
            }
        }
        await exposed.close()
        let errors = (direct + throughExpose).map(\.errors).reduce(0, +)
        if errors > 0 { notes.append("wrk reported \(errors) socket errors or non-2xx responses during the expose runs.") }
        rows.append(
            ComparisonRow(
                workload: "expose throughput, wrk -t2 -c32 -d\(seconds)s GET / (bare: the server on host loopback)",
                unit: "req/s", better: .higher, bare: Samples(direct.map(\.requestsPerSecond)), bwrap: nil,
                secureExec: Samples(throughExpose.map(\.requestsPerSecond))))
        rows.append(
            ComparisonRow(
                workload: "  wrk's median latency", unit: "ms", better: .lower, bare: Samples(direct.map(\.latencyP50)),
                bwrap: nil, secureExec: Samples(throughExpose.map(\.latencyP50))))
        let ratio = Samples(throughExpose.map(\.requestsPerSecond)).median / Samples(direct.map(\.requestsPerSecond)).median
        goals.append(
            GoalOutcome(
                goal: "expose throughput ≥ 0.8 of direct", holds: ratio >= 0.8,
                evidence: String(
                    format: "%.0f req/s through expose vs %.0f req/s direct (%.2f×)",
                    Samples(throughExpose.map(\.requestsPerSecond)).median, Samples(direct.map(\.requestsPerSecond)).median,
                    ratio)))
    }
}
