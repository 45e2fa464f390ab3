import BenchmarkWorkloads
import Foundation
import SecureExec

/// Who runs the egress client, and how it names the upstream.
enum EgressContender: String, CaseIterable {
    /// The host's node in the upstream's namespace: no sandbox, no gateway.
    case direct
    /// A guest, through the gateway, by name (`bench.upstream.test`, the sandbox's DNS).
    case name
    /// A guest, through the gateway, by address (`203.0.113.10`, an IP rule): no DNS.
    case address
}

extension Comparison {
    /// What egress costs a guest's HTTP client: the same node script
    /// (`EgressScripts.client`, node's `fetch`) run directly on the host
    /// inside the upstream's network namespace, and in a guest reaching the
    /// upstream through SecureExec's gateway, by name and by an IP rule;
    /// alternated round by round. Each run times, inside node: kept-alive
    /// GETs, GETs on a new connection each, `dns.lookup` of the name, and
    /// one large download. One runtime serves both guest contenders.
    func egress() async throws {
        let upstream = try EgressUpstream(host: host)
        defer { upstream.stop() }
        let policy = try upstream.policy(allow: [EgressUpstream.name, "\(EgressUpstream.address):80"])
        let runtime = try await NodeRuntime.create(permissions: Permissions(network: .allow(egress: policy)))
        do {
            try await egressRounds(upstream: upstream, runtime: runtime)
        } catch {
            await runtime.dispose()
            throw error
        }
        await runtime.dispose()
    }

    private func egressRounds(upstream: EgressUpstream, runtime: NodeRuntime) async throws {
        let entry = try host.writeEntry(EgressScripts.client, name: "egress-client.mjs")
        var tallies: [EgressContender: EgressTally] = [:]
        // Warm-up: page cache, node's compile cache, the gateway's first pins.
        if !options.smoke {
            for contender in EgressContender.allCases {
                _ = try await egressRun(contender, entry: entry, upstream: upstream, runtime: runtime)
            }
        }
        for round in 0..<options.rounds {
            for contender in rotated(EgressContender.allCases, by: round) {
                let report = try await egressRun(contender, entry: entry, upstream: upstream, runtime: runtime)
                tallies[contender, default: EgressTally()].add(report)
            }
        }
        let rows = EgressRows(
            tallies: tallies, bytes: options.egressBytes, requests: options.egressRequests, fresh: options.egressFresh)
        egressRows = rows.cells
        egressAnalysis = rows.analysis
        for contender in EgressContender.allCases {
            guard let tally = tallies[contender] else { continue }
            say(
                "  \(contender.rawValue): kept alive \(Format.number(tally.kept.median, digits: 0)) µs, new connection \(Format.number(tally.fresh.median, digits: 0)) µs, \(Format.number(tally.throughput.median, digits: 0)) MB/s"
            )
        }
    }

    /// One run of the client by `contender`; checks it really used kept-alive
    /// and fresh connections where it should.
    private func egressRun(
        _ contender: EgressContender, entry: String, upstream: EgressUpstream, runtime: NodeRuntime
    ) async throws -> EgressScripts.ClientReport {
        var environment = [
            "BENCH_URL": contender == .address ? "http://\(EgressUpstream.address)" : "http://\(EgressUpstream.name)",
            "BENCH_WARMUP": "\(options.egressWarmup)", "BENCH_REQUESTS": "\(options.egressRequests)",
            "BENCH_FRESH": "\(options.egressFresh)", "BENCH_LOOKUPS": contender == .address ? "0" : "\(options.egressLookups)",
            "BENCH_BYTES": "\(options.egressBytes)",
        ]
        let output: String
        switch contender {
        case .direct:
            environment["BENCH_HOSTS"] = "{\"\(EgressUpstream.name)\":\"\(EgressUpstream.address)\"}"
            let process = try upstream.spawn(host.bareArguments(entry: entry), environment: host.environment(environment, home: bareHome))
            try process.readToEnd(timeout: .seconds(300))
            process.wait()
            guard process.succeeded else { throw BenchmarkFailure("the direct egress client failed: \(process.stderr)") }
            output = process.stdout
        case .name, .address:
            let result = try await runtime.exec(EgressScripts.client, environment: environment, timeout: .seconds(300))
            guard result.termination == .exited(0) else {
                throw BenchmarkFailure("the guest's egress client (\(contender)) ended \(result.termination): \(result.stderrText)")
            }
            output = result.stdoutText
        }
        let report: EgressScripts.ClientReport
        do {
            report = try JSONDecoder().decode(EgressScripts.ClientReport.self, from: Data(output.utf8))
        } catch {
            throw BenchmarkFailure("the egress client (\(contender)) printed \(output.debugDescription): \(error)")
        }
        // node's fetch keeps one or two sockets alive (it may open the second before it has
        // released the first); `connection: close` must give every measured request its own.
        guard report.keptConnections <= 2, report.freshConnections == options.egressFresh else {
            throw BenchmarkFailure(
                "the egress client (\(contender)) used \(report.keptConnections) connections for \(options.egressRequests) kept-alive requests and \(report.freshConnections) for \(options.egressFresh) fresh ones")
        }
        return report
    }
}

/// One contender's samples over all rounds.
struct EgressTally {
    /// Per request, µs, pooled over rounds.
    var kept = Samples()
    var fresh = Samples()
    var freshLookups = Samples()
    var lookups = Samples()
    /// One download per round: MB/s and ms.
    var throughput = Samples()
    var download = Samples()

    mutating func add(_ report: EgressScripts.ClientReport) {
        report.kept.forEach { kept.add($0 * 1000) }
        report.fresh.forEach { fresh.add($0 * 1000) }
        report.freshLookups.forEach { freshLookups.add($0 * 1000) }
        report.lookups.forEach { lookups.add($0 * 1000) }
        throughput.add(Double(report.received) / 1e6 / (report.downloadMs / 1000))
        download.add(report.downloadMs)
    }
}

/// The egress table and the sentences under it.
struct EgressRows {
    var tallies: [EgressContender: EgressTally]
    var bytes: Int
    var requests: Int
    var fresh: Int

    static let header = [
        "", "unit", "direct (host node in the upstream's netns)", "egress, by name", "egress, by IP rule", "by name / direct",
        "by IP rule / direct",
    ]

    private func value(_ contender: EgressContender, _ pick: (EgressTally) -> Double) -> Double? {
        tallies[contender].map(pick).flatMap { $0.isFinite ? $0 : nil }
    }

    private func row(_ label: String, unit: String, digits: Int, omitAddress: Bool = false, _ pick: (EgressTally) -> Double) -> [String] {
        let direct = value(.direct, pick)
        let name = value(.name, pick)
        let address = omitAddress ? nil : value(.address, pick)
        func ratio(_ value: Double?) -> String {
            guard let value, let direct, direct != 0 else { return "n/a" }
            return Format.ratio(value / direct)
        }
        return [
            label, unit, Format.number(direct, digits: digits), Format.number(name, digits: digits),
            omitAddress ? "—" : Format.number(address, digits: digits), ratio(name), omitAddress ? "—" : ratio(address),
        ]
    }

    var cells: [[String]] {
        [
            row("GET, kept alive: median per request (\(requests) per run)", unit: "µs", digits: 0) { $0.kept.median },
            row("  p90", unit: "µs", digits: 0) { $0.kept.percentile(90) },
            row("GET on a new connection each (connection: close): median (\(fresh) per run)", unit: "µs", digits: 0) {
                $0.fresh.median
            },
            row("  p90", unit: "µs", digits: 0) { $0.fresh.percentile(90) },
            row("  of which the dns.lookup fetch made for it: median", unit: "µs", digits: 0, omitAddress: true) {
                $0.freshLookups.median
            },
            row("dns.lookup of the name alone, back to back: median (direct: an in-process table)", unit: "µs", digits: 0, omitAddress: true) {
                $0.lookups.median
            },
            row("one \(Format.size(bytes)) download: throughput, median of runs", unit: "MB/s", digits: 0) { $0.throughput.median },
            row("  its time", unit: "ms", digits: 1) { $0.download.median },
        ]
    }

    var analysis: [String] {
        guard let direct = tallies[.direct], let name = tallies[.name], let address = tallies[.address] else { return [] }
        return [
            String(
                format: "kept alive, egress adds %.0f µs per request by name (%.2f×) and %.0f µs by IP rule over direct (%.0f µs): each request and response also crosses the gateway (the guest's socket, the nftables redirect to the supervisor's listener, its NIO event loop, a socket in the upstream's namespace)",
                name.kept.median - direct.kept.median, name.kept.median / direct.kept.median,
                address.kept.median - direct.kept.median, direct.kept.median),
            String(
                format: "a new connection costs %.0f µs more by name and %.0f µs more by IP rule than direct (%.0f µs); by IP rule that is the gateway's work before the first byte can pass (accept, SO_ORIGINAL_DST, the policy check, then a dial out of the outbound namespace: a pthread that joins it to make the socket, a wait for the connect, NIO adopting the socket); by name the guest also resolves through the sandbox's DNS (the supervisor): the lookup fetch makes takes %.0f µs there (%.0f µs back to back; %.0f µs direct, from a table), and name and IP rule differ by %.0f µs",
                name.fresh.median - direct.fresh.median, address.fresh.median - direct.fresh.median, direct.fresh.median,
                name.freshLookups.median, name.lookups.median, direct.freshLookups.median,
                name.fresh.median - address.fresh.median),
            String(
                format: "%@ download: %.0f MB/s by name and %.0f MB/s by IP rule vs %.0f MB/s direct (%.2f×, %.2f×); through egress every chunk is read by the supervisor's event loop and written again, a third busy party on the same cores as the upstream and the client",
                Format.size(bytes), name.throughput.median, address.throughput.median, direct.throughput.median,
                name.throughput.median / direct.throughput.median, address.throughput.median / direct.throughput.median),
        ]
    }
}
