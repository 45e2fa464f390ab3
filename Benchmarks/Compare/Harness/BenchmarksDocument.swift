import BenchmarkWorkloads
import Foundation

/// BENCHMARKS.md: the machine, the method, the tables and the goals.
@MainActor
struct BenchmarksDocument {
    var machine: Machine
    var options: Options
    var comparison: Comparison
    var loadBefore: String
    var loadAfter: String

    var markdown: String {
        var parts: [String] = []
        parts.append(
            """
            # SecureExec benchmarks

            Written by `make bench` (`Benchmarks/Compare`, the `secure-exec-compare` harness); do not edit by hand.
            Every number is a median of alternated runs in one process: each round runs bare node, bwrap and
            SecureExec once each, in a rotating order, so drift on the machine hits all of them alike.

            | | |
            | --- | --- |
            | date | \(machine.date) |
            | commit | \(machine.commit) |
            | kernel | \(machine.kernel) |
            | CPU | \(machine.cpu), \(machine.cores) cores online |
            | memory | \(String(format: "%.1f", machine.memoryGiB)) GiB |
            | load average (1, 5, 15 min) | before \(loadBefore); after \(loadAfter) |
            | node | \(machine.node) |
            | bwrap | \(machine.bwrap) |
            | wrk | \(machine.wrk) |
            | Swift | \(machine.swift) (release build) |
            | SecureExec's init | `\(machine.initProgram)` |
            | rounds | \(options.rounds) per start-up workload; fetch \(options.fetchRounds) × \(options.requestsPerRound) requests per client; wrk \(options.wrkRounds) × \(options.wrkSeconds) s |

            ## Side by side

            Ratios are to bare node (for req/s, higher is better; for times, lower is).

            """)
        parts.append(Format.markdownTable(header: Format.comparisonHeader, rows: comparison.rows.map(Format.comparisonCells)))
        parts.append(
            """

            How each column runs:

            - **bare node**: `node --experimental-detect-module <dir>/entry.js` (what SecureExec runs in the
              guest), launched with posix_spawn by the harness, environment `PATH`, `HOME`, `TMPDIR` only. Times run
              from just before posix_spawn to `waitpid` returning (cold start), to the first stdout byte read
              from its pipe, or to its "server listening" line read from its pipe.
            - **bwrap**: the same command under `bwrap --unshare-user --unshare-net --unshare-pid --unshare-ipc
              --unshare-uts --unshare-cgroup --die-with-parent --new-session`, with a read-only tmpfs root holding
              only node, the libraries `ldd` lists, `/etc/ld.so.cache`, `--dev /dev`, `--proc /proc`, a `/tmp`
              tmpfs and the entry's directory read-only at `/workspace` (no seccomp filter, no cgroup limits,
              no uid-range mapping: it maps the caller's uid).
            - **SecureExec**: the public API only (`NodeRuntime.create`, `spawn`, `wait`, `waitForListener`,
              `fetch`, `expose`, `dispose`), default limits (memory and pids cgroups) unless a row says otherwise.
            - **fetch rows**: SecureExec's column is `runtime.fetch(3000, path: "/health")` on its kept-alive pool;
              bare node's is a plain SwiftNIO HTTP/1.1 client (NIOPosix + NIOHTTP1, one kept-alive connection, the
              stack `fetch` is built on) to the same server on the host's 127.0.0.1; bwrap's is that NIO client on a
              socket made inside bwrap's network namespace (setns on a dedicated thread, as SecureExec dials).
              The indented rows run the same plain NIO client, then a raw blocking-socket client, against each
              namespace, SecureExec's included: they separate the kernel's path from the client's cost.
            - **expose rows**: `wrk -t2 -c32` on the host against `runtime.expose(3000).url` vs against the same
              node server run bare on the host's loopback. Two cores are shared by wrk, node and the relay.
            """)
        if !comparison.phaseRows.isEmpty {
            parts.append(
                """

                ## Cold start by phase

                Medians in ms. node reports two CLOCK_MONOTONIC readings (its `performance` time origin, taken as
                its process starts after the dynamic loader, and the script's first line), which fall on the host's
                timeline since sandboxes get no time namespace; the host adds its own around each call. The last
                column is SecureExec with `Limits(memoryBytes: nil, maxProcesses: nil)`: no cgroups.

                """)
            parts.append(Format.markdownTable(header: ["phase", "bare node", "bwrap", "SecureExec", "SecureExec, no cgroup limits"], rows: comparison.phaseRows))
            parts.append(
                """

                What the kernel's steps of `create()` cost, measured by a C probe (`Benchmarks/Compare/CPhases`) that
                does them one by one from this same process, in the same namespaces, with the same guest root
                (its child exits instead of exec'ing init; the library is not instrumented):

                """)
            parts.append(Format.markdownTable(header: ["kernel step", "ms"], rows: comparison.kernelRows))
            parts.append("\nWhere the time goes:\n")
            parts += comparison.coldStartAnalysis.map { "- " + $0 }
        }
        if !comparison.memoryRows.isEmpty {
            parts.append(
                """

                ## Idle sandboxes

                Each sandbox runs the dev server, listening and idle. PSS splits shared pages among the processes
                sharing them (all inits share init's text, all nodes node's). The supervisor's share is this
                process's VmRSS growth from before the first sandbox to all of them running, divided by their number.

                """)
            parts.append(Format.markdownTable(header: ["", "bare node", "bwrap", "SecureExec"], rows: comparison.memoryRows))
        }
        if !comparison.churnRows.isEmpty {
            parts.append(
                """

                ## Churn

                \(options.churnCycles) sequential `create()` + `dispose()` cycles (no guest). "Halfway" is after half
                of them; "settled" is after the descriptor table stayed unchanged for 300 ms and threads dropped
                back (Dispatch retires idle threads after a few seconds), waiting at most 10 s. Resident memory
                that grows in the first half and not in the second is the allocator reaching its working size, not
                a leak.

                """)
            parts.append(Format.markdownTable(header: ["", "before", "halfway", "right after", "settled"], rows: comparison.churnRows))
        }
        if !comparison.projectRows.isEmpty {
            parts.append(
                """

                ## Starting a project

                A 1,000-file project (1 KiB each, ten folders) made ready in a new sandbox: `create()` until it
                returns plus a guest that requires one of its files, alternated round by round. "Copy" uploads
                every file with `files:`; "overlay" mounts the folder as `workspace:` (issue 10). Dispose is not
                counted.

                """)
            parts.append(Format.markdownTable(header: ["how", "ms (median)", "ratio to copy"], rows: comparison.projectRows))
        }
        if !comparison.rootRows.isEmpty {
            parts.append(
                """

                ## Root images

                What the default `.standard` root (node, npm, npx, busybox's shell and tools: two more read-only
                binds and about 70 symlinks) costs against `.minimal` (node only): cold start, and spawn to the
                first stdout byte in a runtime that exists, alternated round by round. A shell command's first
                byte is timed in `.standard` only (`.minimal` has no shell).

                """)
            parts.append(Format.markdownTable(header: Format.rootHeader, rows: comparison.rootRows))
        }
        if !comparison.fileRows.isEmpty {
            parts.append(
                """

                ## Whole files

                One sandbox; at each size the guest writes a file of that many bytes into `/workspace`, then each
                round times `readFile` of it, a collected `fetch` of it from a guest server (`fs.createReadStream`
                piped to the response), and the guest's own `fs.readFileSync` of it (timed inside the guest).
                Medians of \(options.fileRounds) rounds. Linear time means the MiB/s columns stay flat as the size grows.

                """)
            parts.append(Format.markdownTable(header: FileTransferRow.header, rows: comparison.fileRows.map(\.cells)))
        }
        if !comparison.egressRows.isEmpty {
            parts.append(
                """

                ## Egress

                One node script, byte for byte, using node's `fetch` (kept alive by default) against an upstream
                served by the host's node in a network namespace of its own (`203.0.113.10:80`, a local route on
                its lo, made by `Benchmarks/Compare/CPhases/cphases_netns.c`). **Direct**: the host's node run
                inside that namespace, no sandbox, the name answered from an in-process table (a patched
                `dns.lookup`). **Egress**: a guest of one runtime with `Permissions(network: .allow(egress:))`,
                allowed `\(EgressUpstream.name)` (a `.hosts` resolver) and `\(EgressUpstream.address):80` (an IP rule),
                dialing out from the upstream's namespace (`outboundNetworkNamespace`); by name the guest resolves
                through the sandbox's DNS (the supervisor), by IP rule it connects to the address. Each run times,
                with `performance.now()` inside node: \(options.egressRequests) kept-alive GETs of an 11-byte body after
                \(options.egressWarmup) warm-up ones, \(options.egressFresh) GETs with `connection: close` (a new
                connection each, checked by the server's connection numbers), \(options.egressLookups) `dns.lookup`s of
                the name, and one \(Format.size(options.egressBytes)) download read as a stream. \(options.rounds) runs per
                contender, alternated; per-request times are pooled over runs, the download is a median of runs.

                """)
            parts.append(Format.markdownTable(header: EgressRows.header, rows: comparison.egressRows))
            parts.append("")
            parts += comparison.egressAnalysis.map { "- " + $0 }
        }
        parts.append("\n## Goals (issue 5)\n")
        for goal in comparison.goals {
            let verdict = goal.holds == true ? "**holds**" : goal.holds == false ? "**missed**" : "n/a"
            parts.append("- \(verdict): \(goal.goal). \(goal.evidence).")
        }
        if !comparison.notes.isEmpty {
            parts.append("\n## Notes\n")
            for note in comparison.notes { parts.append("- \(note)") }
        }
        parts.append("")
        return parts.joined(separator: "\n")
    }
}
