import BenchmarkWorkloads
import Foundation
import SecureExec

#if canImport(Glibc)
import Glibc
#endif

extension Comparison {
    /// Blocks until the fd table stops changing for 300 ms (at most 3 s), and
    /// then until threads drop to `threads` (at most `timeout`); returns the census.
    /// Blocking on purpose: an async sleep would keep Dispatch's idle threads awake.
    func settledCensus(threadsAtMost threads: Int? = nil, timeout: Duration = .seconds(10)) -> HostCensus {
        var census = HostCensus.take()
        let stableDeadline = monotonicNanos() + 3_000_000_000
        while monotonicNanos() < stableDeadline {
            usleep(300_000)
            let later = HostCensus.take()
            if later.descriptors == census.descriptors && later.threads == census.threads { break }
            census = later
        }
        if let threads {
            let deadline = monotonicNanos() + Int64(timeout.components.seconds) * 1_000_000_000
            while census.threads > threads && monotonicNanos() < deadline {
                usleep(100_000)
                census = HostCensus.take()
            }
        }
        return census
    }

    static func mebibytes(_ kib: Double) -> String { String(format: "%.2f MiB", kib / 1024) }

    /// Idle dev-server sandboxes alive at once: what each costs beyond node's own memory.
    func memory() async throws {
        let count = options.sandboxes
        let others = options.otherSandboxes
        let entry = try host.writeEntry(GuestScripts.devServer, name: "server.js")

        // SecureExec: `count` runtimes, each with the dev server listening.
        let before = settledCensus()
        let initsBefore = Set(HostCensus.sandboxInits())
        var sandboxes: [(NodeRuntime, GuestProcess)] = []
        let startedAt = monotonicNanos()
        do {
            var next = 0
            while next < count {
                let batch = min(4, count - next)
                let started = try await withThrowingTaskGroup(of: (NodeRuntime, GuestProcess).self) { group in
                    for _ in 0..<batch { group.addTask { try await SecureExecRuns.serving() } }
                    var made: [(NodeRuntime, GuestProcess)] = []
                    for try await sandbox in group { made.append(sandbox) }
                    return made
                }
                sandboxes += started
                next += batch
            }
        } catch {
            for (runtime, _) in sandboxes { await runtime.dispose() }
            throw BenchmarkFailure("only \(sandboxes.count) of \(count) idle sandboxes started: \(error)")
        }
        let startSeconds = Double(monotonicNanos() - startedAt) / 1e9
        try await Task.sleep(for: .seconds(options.smoke ? 0.2 : 2))
        let after = HostCensus.take()
        let inits = HostCensus.sandboxInits().filter { !initsBefore.contains($0) }
        var listening = 0
        for (runtime, _) in sandboxes where (try? runtime.findListener(port: 3000)) == true { listening += 1 }
        let initKiB = Double(inits.compactMap(HostCensus.proportionalKiB).reduce(0, +)) / Double(count)
        let guestPIDs = inits.flatMap(HostCensus.children)
        let guestKiB = Double(guestPIDs.compactMap(HostCensus.proportionalKiB).reduce(0, +)) / Double(max(1, guestPIDs.count))
        let supervisorKiB = Double(after.residentKiB - before.residentKiB) / Double(count)
        let descriptorsEach = Double(after.descriptors - before.descriptors) / Double(count)
        let threadsAdded = after.threads - before.threads
        await withTaskGroup(of: Void.self) { group in
            for (runtime, _) in sandboxes { group.addTask { await runtime.dispose() } }
        }
        sandboxes = []

        // bwrap: its two processes per sandbox (the outer one and its PID 1).
        var bwrapOwnKiB: Double?
        var bwrapNodeKiB: Double?
        if hasBwrap {
            var processes: [HostProcess] = []
            defer { processes.forEach { $0.stop() } }
            for _ in 0..<others {
                let process = try HostProcess(
                    try host.bwrapArguments(entry: entry), environment: host.environment(["PORT": "3000"], home: "/workspace"))
                processes.append(process)
                _ = try process.waitForOutput(GuestScripts.listeningLine)
            }
            try await Task.sleep(for: .seconds(options.smoke ? 0.2 : 1))
            var own = 0
            var nodes = 0
            for process in processes {
                let inner = HostCensus.children(of: process.pid)
                own += ([process.pid] + inner).compactMap(HostCensus.proportionalKiB).reduce(0, +)
                nodes += inner.flatMap(HostCensus.children).compactMap(HostCensus.proportionalKiB).reduce(0, +)
            }
            bwrapOwnKiB = Double(own) / Double(others)
            bwrapNodeKiB = Double(nodes) / Double(others)
        }

        // Bare node: node's own memory, for reference.
        var bareNodeKiB: Double
        do {
            var processes: [HostProcess] = []
            defer { processes.forEach { $0.stop() } }
            for _ in 0..<others {
                let process = try HostProcess(
                    host.bareArguments(entry: entry), environment: host.environment(["PORT": "\(try freePort())"], home: bareHome))
                processes.append(process)
                _ = try process.waitForOutput(GuestScripts.listeningLine)
            }
            try await Task.sleep(for: .seconds(options.smoke ? 0.2 : 1))
            bareNodeKiB = Double(processes.map(\.pid).compactMap(HostCensus.proportionalKiB).reduce(0, +)) / Double(others)
        }

        let ownKiB = initKiB + max(0, supervisorKiB)
        memoryRows = [
            ["idle dev-server sandboxes alive at once", "\(others)", hasBwrap ? "\(others)" : "n/a", "\(count) (\(listening) listening, \(inits.count) inits; started in \(String(format: "%.1f", startSeconds)) s)"],
            ["node's own memory per sandbox (PSS of the node process)", Self.mebibytes(bareNodeKiB), bwrapNodeKiB.map(Self.mebibytes) ?? "n/a", Self.mebibytes(guestKiB)],
            ["sandbox's PID 1 per sandbox (PSS: SecureExec's init; bwrap's inner bwrap + outer bwrap)", "—", bwrapOwnKiB.map(Self.mebibytes) ?? "n/a", Self.mebibytes(initKiB)],
            ["supervisor's RSS growth per sandbox (this process)", "—", "—", Self.mebibytes(supervisorKiB)],
            ["SecureExec's own memory per sandbox (init + supervisor)", "—", bwrapOwnKiB.map(Self.mebibytes) ?? "n/a", Self.mebibytes(ownKiB)],
            ["supervisor descriptors per sandbox; threads added in all", "—", "—", String(format: "%.1f fds; %d threads", descriptorsEach, threadsAdded)],
        ]
        goals.append(
            GoalOutcome(
                goal: "\(count) idle dev-server sandboxes alive at once, SecureExec's own memory per sandbox (init + supervisor) under 2 MiB",
                holds: listening == count && inits.count == count && ownKiB < 2048,
                evidence: String(
                    format: "%d of %d listening; init PSS %.2f MiB + supervisor RSS growth %.2f MiB = %.2f MiB per sandbox (node itself: %.1f MiB)",
                    listening, count, initKiB / 1024, supervisorKiB / 1024, ownKiB / 1024, guestKiB / 1024)))
    }

    /// create/dispose cycles: the rate, and whether anything of the host's grows.
    func churn() async throws {
        let cycles = options.churnCycles
        for _ in 0..<3 { await (try await NodeRuntime.create()).dispose() }
        let before = settledCensus()
        let threadsBefore = HostCensus.threadNames()
        let startedAt = monotonicNanos()
        var halfway = before
        for cycle in 0..<cycles {
            await (try await NodeRuntime.create()).dispose()
            if cycle + 1 == cycles / 2 { halfway = HostCensus.take() }
        }
        let elapsed = Double(monotonicNanos() - startedAt) / 1e9
        let rightAfter = HostCensus.take()
        let settled = settledCensus(threadsAtMost: before.threads)
        if settled.threads > before.threads {
            var added = HostCensus.threadNames()
            for name in threadsBefore { if let index = added.firstIndex(of: name) { added.remove(at: index) } }
            notes.append("Threads still there 10 s after the churn that were not before it: \(added.joined(separator: ", ")).")
        }

        // The same churn of empty sandboxes: bwrap running /usr/bin/true, and bare /usr/bin/true.
        let trueProgram = NodeHost.findExecutable("true") ?? "/usr/bin/true"
        func rate(_ arguments: [String]) throws -> Double {
            let start = monotonicNanos()
            for _ in 0..<options.otherChurnCycles {
                let process = try HostProcess(arguments, environment: host.environment(home: "/"))
                process.wait()
                guard process.succeeded else { throw BenchmarkFailure("\(arguments[0]) failed: \(process.stderr)") }
            }
            return Double(options.otherChurnCycles) / (Double(monotonicNanos() - start) / 1e9)
        }
        let bareRate = try rate([trueProgram])
        let bwrapRate = hasBwrap ? try rate(try host.bwrapArguments([(trueProgram as NSString).resolvingSymlinksInPath])) : nil
        rows.append(
            ComparisonRow(
                workload: "churn: empty sandboxes per second (SecureExec: create + dispose; bwrap: `true` inside; bare: `true`)",
                unit: "/s", better: .higher, bare: Samples([bareRate]), bwrap: bwrapRate.map { Samples([$0]) },
                secureExec: Samples([Double(cycles) / elapsed])))

        func row(_ name: String, _ value: (HostCensus) -> Int, format: (Int) -> String = { "\($0)" }) -> [String] {
            [name, format(value(before)), format(value(halfway)), format(value(rightAfter)), format(value(settled))]
        }
        let kib = { (value: Int) in String(format: "%.1f MiB", Double(value) / 1024) }
        churnRows = [
            row("open descriptors", \.descriptors),
            row("threads", \.threads),
            row("mount table lines (/proc/self/mountinfo)", \.mountLines),
            row("SecureExec cgroups (secure-exec-\(getpid())-*)", \.cgroups),
            row("child processes", \.children),
            row("resident memory (VmRSS)", \.residentKiB, format: kib),
        ]
        let rssGrowth = settled.residentKiB - before.residentKiB
        // A leak grows with every cycle; the allocator's high-water mark stops growing. So memory
        // counts as growing when the second half of the cycles added more than 1 MiB.
        let secondHalfGrowth = settled.residentKiB - halfway.residentKiB
        let grew = settled.descriptors > before.descriptors || settled.threads > before.threads
            || settled.mountLines > before.mountLines || settled.cgroups > before.cgroups || settled.children > before.children
            || secondHalfGrowth > 1024
        goals.append(
            GoalOutcome(
                goal: "\(cycles) create/dispose cycles with no growth in fds, threads, mounts, cgroups or memory",
                holds: !grew,
                evidence: String(
                    format: "fds %d → %d, threads %d → %d, mounts %d → %d, cgroups %d → %d, RSS %+.1f MiB in all and %+.1f MiB over the second half (%.1f KiB per cycle there; more than 1 MiB over the second half counts as growth); %.0f cycles/s",
                    before.descriptors, settled.descriptors, before.threads, settled.threads, before.mountLines,
                    settled.mountLines, before.cgroups, settled.cgroups, Double(rssGrowth) / 1024,
                    Double(secondHalfGrowth) / 1024, Double(secondHalfGrowth) / Double(max(1, cycles - cycles / 2)),
                    Double(cycles) / elapsed)))
    }
}
