import CPhases
import Foundation
import SecureExec

#if canImport(Glibc)
import Glibc
#endif

/// The `egress` workload's upstream: `EgressScripts.upstream` run by the
/// host's node in a network namespace of its own (never the host's network),
/// listening on `address`:80, which a local route on that namespace's lo
/// makes reachable there. Runtimes reach it by dialing out from the
/// namespace (`EgressPolicy.outboundNetworkNamespace`) with `name` mapped by
/// a `.hosts` resolver, as the egress tests do (Tests/TestSupport/EgressUpstreams.swift).
/// Not Sendable: one task owns it. Always `stop()` it.
public final class EgressUpstream {
    /// TEST-NET-3: public to the egress rules, routed nowhere on a real network.
    public static let address = "203.0.113.10"
    public static let name = "bench.upstream.test"

    /// The namespace; open while the upstream runs.
    public let netnsFD: Int32
    private let server: HostProcess

    /// Makes the namespace and starts the server; returns once it listens.
    public init(host: NodeHost) throws {
        var step: UnsafePointer<CChar>? = nil
        let fd = cphases_upstream_netns("203.0.113.0", 24, &step)
        guard fd >= 0 else {
            throw BenchmarkFailure(
                "upstream namespace: \(step.map { String(cString: $0) } ?? "?"): \(String(cString: strerror(errno)))")
        }
        netnsFD = fd
        do {
            let entry = try host.writeEntry(EgressScripts.upstream, name: "egress-upstream.mjs")
            server = try Self.spawn(
                in: fd, host.bareArguments(entry: entry),
                environment: host.environment(["UPSTREAM_ADDRESS": Self.address], home: host.scratch + "/workspace"))
            _ = try server.waitForOutput("ready")
        } catch {
            close(fd)
            throw error
        }
    }

    /// What a policy names to dial out from the namespace.
    public var namespacePath: String { "/proc/\(getpid())/fd/\(netnsFD)" }

    /// A policy allowing `patterns`, resolving `name` to `address`, dialing from the namespace.
    public func policy(allow patterns: [String]) throws -> EgressPolicy {
        try EgressPolicy(
            allow: patterns, resolver: .hosts([Self.name: [Self.address]]), outboundNetworkNamespace: namespacePath)
    }

    /// Starts `arguments` (bare node and a script) in the upstream's namespace: the host's node, no sandbox.
    public func spawn(_ arguments: [String], environment: [String: String]) throws -> HostProcess {
        try Self.spawn(in: netnsFD, arguments, environment: environment)
    }

    public func stop() {
        server.stop()
        close(netnsFD)
    }

    /// posix_spawn from a thread of its own that first joins the namespace, so
    /// the child starts there; no Swift concurrency or Dispatch thread changes namespace.
    private static func spawn(in netnsFD: Int32, _ arguments: [String], environment: [String: String]) throws -> HostProcess {
        let box = SpawnBox()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            if cphases_enter_netns(netnsFD) != 0 {
                box.outcome = .failure(BenchmarkFailure("setns into the upstream namespace: \(String(cString: strerror(errno)))"))
            } else {
                box.outcome = Result { try HostProcess(arguments, environment: environment) }
            }
            done.signal()
        }
        thread.start()
        done.wait()
        return try box.outcome!.get()
    }

    /// Hands the process from the spawning thread to the caller, which waits on a semaphore for it.
    private final class SpawnBox: @unchecked Sendable {
        var outcome: Result<HostProcess, any Error>?
    }
}
