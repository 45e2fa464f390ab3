import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The guests of one sandbox by pid, and how each ended.
///
/// Concurrency: `state` guards the table. Guests are booked and ended from
/// init's events on the sandbox's queue; readers call from anywhere.
final class GuestTable: Sendable {
    private let cgroup: SandboxCgroup?
    private let state = Mutex(State())

    private struct State {
        var running: [Int32: GuestRecord] = [:]
        /// Spawn requests sent and not answered yet.
        var starting = 0
        /// The guest started last (what `waitForListener` watches when told no guest).
        var last: GuestRecord?
    }

    init(cgroup: SandboxCgroup?) { self.cgroup = cgroup }

    /// A spawn request is on its way to init.
    func willStart() { state.withLock { $0.starting += 1 } }

    /// Init answered a spawn request: with a pid (booked now) or a failure.
    func didStart(_ record: GuestRecord, pid: Int32?) {
        state.withLock { state in
            state.starting -= 1
            guard let pid else { return }
            record.started(pid: pid)
            state.running[pid] = record
            state.last = record
        }
    }

    /// Init reported a guest's exit (raw wait status).
    func exited(pid: Int32, status: Int32) {
        guard let record = state.withLock({ $0.running.removeValue(forKey: pid) }) else { return }
        record.ended(classify(waitStatus: status, of: record))
    }

    /// Init is gone: every guest died with its pid namespace.
    func endAll() {
        let records = state.withLock { state in
            defer { state.running = [:] }
            return Array(state.running.values)
        }
        for record in records { record.ended(.signaled(.kill)) }
    }

    var runningRecords: [GuestRecord] { state.withLock { Array($0.running.values) } }
    var hasRunningGuest: Bool { state.withLock { !$0.running.isEmpty || $0.starting > 0 } }
    var lastStarted: GuestRecord? { state.withLock { $0.last } }

    /// Says which limit ended a guest, when one did.
    private func classify(waitStatus status: Int32, of record: GuestRecord) -> Termination {
        let raw = Termination(waitStatus: status)
        guard case .signaled(let signal) = raw else { return raw }
        if signal.rawValue == SIGXCPU { return .cpuLimit }
        if signal == .kill {
            if record.wasTimedOut { return .timedOut }
            if cgroup?.consumeOOMKill() == true { return .outOfMemory }
        }
        return raw
    }
}
