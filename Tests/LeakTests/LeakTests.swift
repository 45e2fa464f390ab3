import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A long-lived supervisor does not grow with every sandbox it runs, and a
/// supervisor that dies takes its sandboxes with it (README, "Security model":
/// no orphans). Counts are process-wide, so this target runs alone:
/// `swift test --filter SecureExecLeakTests`.
@Suite(
    "Host resources and orphans", .serialized, .needsRoot,
    .timeLimit(.minutes(1)))
struct LeakTests {
    /// One full runtime lifetime: create, spawn `console.log(1)`, wait, dispose.
    func cycle() async throws {
        let guest = try await withRuntime { runtime in try await runtime.runGuest("console.log(1)") }
        #expect(guest.termination == .exited(0))
        #expect(guest.line == "1")
    }

    @Test("50 create/spawn/wait/dispose cycles leave descriptors, mounts, threads and children as they were")
    func cyclesLeaveNothingBehind() async throws {
        // Warm-up: one-time state (the sealed init image, the Dispatch pool's threads).
        try await cycle()
        let descriptors = settledDescriptors()
        let mountLines = HostCensus.mountTableLineCount()
        let threadNames = HostCensus.threadNames()
        let children = HostCensus.children()

        // dispose() promises to have released everything when it returns, so the
        // table is compared right after every cycle, not only after the last.
        var openAfterDispose: [String] = []
        for index in 1...50 {
            try await cycle()
            let table = HostCensus.openDescriptors()
            if table.count != descriptors.count {
                openAfterDispose.append("cycle \(index): \(describeChange(from: descriptors, to: table))")
            }
        }

        #expect(
            openAfterDispose.isEmpty,
            "\(openAfterDispose.count) of 50 cycles had a different descriptor table right after dispose() returned; first: \(openAfterDispose.prefix(3))"
        )
        #expect(HostCensus.mountTableLineCount() == mountLines)
        #expect(HostCensus.children() == children)
        // A descriptor that closes late is a different bug from one that never closes: tell them apart.
        let closedLate = Self.blockingPoll(for: .seconds(2)) { HostCensus.openDescriptors().count == descriptors.count }
        #expect(closedLate, "leaked for good: \(describeChange(from: descriptors, to: HostCensus.openDescriptors()))")
        let threadsSettled = Self.blockingPoll(for: .seconds(10)) { HostCensus.threadCount() <= threadNames.count }
        #expect(threadsSettled, "threads before: \(threadNames); 10 s after the cycles: \(HostCensus.threadNames())")
    }

    @Test("20 egress cycles (DNS, an allowed fetch, a refused one, dispose) leave descriptors as they were")
    func egressCyclesLeaveNothingBehind() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let policy = try upstreams.policy(allow: ["api.upstream.test"])
        let code = """
            const refused = await fetch('http://203.0.113.99/').then(() => 'ok', () => 'refused');
            console.log((await (await fetch('http://api.upstream.test/')).json()).server, refused);
            """
        func egressCycle() async throws {
            let guest = try await withRuntime(permissions: Permissions(network: .allow(egress: policy))) { runtime in
                try await runtime.runGuest(code)
            }
            #expect(guest.line == "plain refused", "\(guest)")
        }
        try await egressCycle()
        let descriptors = settledDescriptors()
        var openAfterDispose: [String] = []
        for index in 1...20 {
            try await egressCycle()
            let table = HostCensus.openDescriptors()
            if table.count != descriptors.count {
                openAfterDispose.append("cycle \(index): \(describeChange(from: descriptors, to: table))")
            }
        }
        #expect(openAfterDispose.isEmpty, "\(openAfterDispose.prefix(3))")
        let settled = Self.blockingPoll(for: .seconds(2)) { HostCensus.openDescriptors().count == descriptors.count }
        #expect(settled, "leaked for good: \(describeChange(from: descriptors, to: HostCensus.openDescriptors()))")
    }

    @Test("SIGKILL of the host process ends its sandbox's init and guest")
    func killedHostLeavesNoOrphans() async throws {
        let marker = UUID().uuidString
        let host = try TestHost.start([marker])
        defer {
            host.stop()
            HostCensus.removeCgroups(ofSupervisors: [host.pid])
        }
        try await host.waitUntilReady(timeout: .seconds(20))

        // Control: before the kill the census finds exactly this host's init and guest.
        let inits = HostCensus.children(of: host.pid).filter(\.isSandboxInit)
        let guests = HostCensus.processes().filter {
            $0.isGuestNode && HostCensus.environment(of: $0.pid)?["SECURE_EXEC_TEST_MARKER"] == marker
        }
        #expect(inits.count == 1, "\(HostCensus.children(of: host.pid))")
        #expect(guests.count == 1)
        #expect(guests.map(\.parent) == inits.map(\.pid))

        kill(host.pid, SIGKILL)
        // Only the exit: a surviving sandbox process holding the host's pipes must not hang the test.
        let exit = try await host.waitForExit(includingOutput: false, timeout: .seconds(10))
        #expect(exit.reason == .uncaughtSignal && exit.status == SIGKILL)

        let sandboxPIDs = (inits + guests).map(\.pid)
        let alive = { sandboxPIDs.compactMap(HostCensus.process).filter { $0.state != "Z" } }
        let gone = await poll(for: .seconds(5)) { alive().isEmpty }
        #expect(gone, "still running 5 s after the host was killed: \(alive())")
    }

    @Test("a stray fork of the host holding the control socket does not keep the sandbox alive")
    func strayForkDoesNotKeepSandbox() async throws {
        let marker = UUID().uuidString
        let host = try TestHost.start([marker, "--stray-fork"])
        defer {
            host.stop()
            HostCensus.removeCgroups(ofSupervisors: [host.pid])
        }
        try await host.waitUntilReady(timeout: .seconds(20))
        let strayLine = try #require(host.stdout.lines.first { $0.hasPrefix("STRAY ") })
        let stray = try #require(Int32(strayLine.dropFirst("STRAY ".count)))
        // Killing the stray child closes the pipes, so `host.stop()` can reap the host.
        defer { kill(stray, SIGKILL) }
        let inits = HostCensus.children(of: host.pid).filter(\.isSandboxInit)
        #expect(inits.count == 1)

        kill(host.pid, SIGKILL)
        // (Foundation reports the exit only once the pipes close, which the
        // stray child prevents: watch /proc instead.)
        let hostDead = await poll(for: .seconds(10)) {
            HostCensus.process(host.pid).map { $0.state == "Z" } ?? true
        }
        #expect(hostDead)
        // The stray child still holds the control socket; init must go anyway.
        #expect(HostCensus.process(stray) != nil, "the stray fork is still alive")
        let gone = await poll(for: .seconds(5)) {
            inits.compactMap { HostCensus.process($0.pid) }.allSatisfy { $0.state == "Z" }
        }
        #expect(gone, "the sandbox outlived its host because a fork held its socket")
    }

    /// The descriptor table once it has not changed for 300 ms (trying for at
    /// most 3 s): the warm-up's descriptors may close a moment after its
    /// dispose() returned, and the baseline must not count them.
    private func settledDescriptors() -> [Int32: String] {
        let deadline = ContinuousClock.now.advanced(by: .seconds(3))
        var table = HostCensus.openDescriptors()
        while ContinuousClock.now < deadline {
            usleep(300_000)
            let later = HostCensus.openDescriptors()
            if later == table { break }
            table = later
        }
        return table
    }

    /// Polls `condition` every 100 ms until it holds or `timeout` passes, by
    /// blocking this thread. On purpose: an async sleep wakes the Dispatch
    /// pool every time, which keeps its idle threads (they exit after 5 s
    /// idle) alive and would make any thread count look leaked.
    private static func blockingPoll(for timeout: Duration, until condition: () -> Bool) -> Bool {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while !condition() {
            if ContinuousClock.now >= deadline { return false }
            usleep(100_000)
        }
        return true
    }

    private func describeChange(from before: [Int32: String], to after: [Int32: String]) -> String {
        let opened = after.filter { before[$0.key] != $0.value }.sorted { $0.key < $1.key }
        let closed = before.filter { after[$0.key] != $0.value }.sorted { $0.key < $1.key }
        return "opened \(opened.map { "\($0.key) -> \(HostCensus.explain($0.value))" }), closed \(closed.map { "\($0.key) -> \($0.value)" })"
    }
}
