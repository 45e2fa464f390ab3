import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A program the test runs on the host, with stdout and stderr collected.
///
/// Started with posix_spawn, its pipes read and its exit awaited (waitpid)
/// by plain threads of its own: Foundation's Process proved flaky here when
/// many short programs ran at once (a missed termination, a crash in run()).
/// Always `stop()` it (use `defer`): that SIGKILLs it if it still runs and
/// reaps it, so no host process outlives the test that started it.
public final class HostProgram: Sendable {
    public let stdout = GuestOutput()
    public let stderr = GuestOutput()
    // Each gets one byte: when the process has exited, and when both its pipes reached end-of-file.
    private let terminated = GuestOutput()
    private let drained = GuestOutput()
    private let exit = ExitRecord()
    public let pid: Int32

    /// Starts `executable` with `arguments`; its environment is this process's plus `environment`.
    public init(_ executable: String, arguments: [String] = [], environment: [String: String] = [:]) throws {
        var out: [Int32] = [-1, -1]
        var err: [Int32] = [-1, -1]
        guard pipe(&out) == 0, pipe(&err) == 0 else { throw HostCallError(step: "pipe", errno: errno) }
        for fd in [out[0], err[0]] { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        posix_spawn_file_actions_adddup2(&actions, err[1], 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let merged = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let spawned = posix_spawn(&child, executable, &actions, &attributes, argv, envp)
        close(out[1])
        close(err[1])
        guard spawned == 0 else {
            close(out[0])
            close(err[0])
            throw HostCallError(step: "posix_spawn \(executable)", errno: spawned)
        }
        pid = child

        let pending = PendingEvents(count: 2) { [drained] in drained.append([1]) }
        for (fd, sink) in [(out[0], stdout), (err[0], stderr)] {
            Thread.detachNewThread {
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let got = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if got < 0 && errno == EINTR { continue }
                    if got <= 0 { break }
                    sink.append(Array(buffer[0..<got]))
                }
                close(fd)
                pending.done()
            }
        }
        let spawnedPID = child
        Thread.detachNewThread { [exit, terminated] in
            var status: Int32 = 0
            while waitpid(spawnedPID, &status, 0) < 0 && errno == EINTR {}
            let result: (Int32, Process.TerminationReason) =
                status & 0x7f == 0 ? ((status >> 8) & 0xff, .exit) : (status & 0x7f, .uncaughtSignal)
            exit.set(result)
            terminated.append([1])
        }
    }

    /// Waits for the exit and, when `includingOutput`, for the end of its output (a process
    /// it started may hold its pipes open longer); throws `OutputTimeout` after `timeout`.
    @discardableResult
    public func waitForExit(includingOutput: Bool = true, timeout: Duration = .seconds(30)) async throws
        -> (status: Int32, reason: Process.TerminationReason)
    {
        try await terminated.waitUntilContains("\u{1}", timeout: timeout)
        if includingOutput { try await drained.waitUntilContains("\u{1}", timeout: timeout) }
        return exit.get()!
    }

    /// SIGKILLs the program if it still runs and waits until it is reaped. Idempotent.
    public func stop() {
        if exit.get() == nil { kill(pid, SIGKILL) }
        while exit.get() == nil { usleep(1000) }
    }
}

/// How a host program ended, set once by its waiter thread.
private final class ExitRecord: Sendable {
    private let value = Mutex<(status: Int32, reason: Process.TerminationReason)?>(nil)
    func set(_ result: (Int32, Process.TerminationReason)) { value.withLock { $0 = (result.0, result.1) } }
    func get() -> (status: Int32, reason: Process.TerminationReason)? { value.withLock { $0 } }
}

/// Calls `action` once `done()` has been called `count` times.
private final class PendingEvents: Sendable {
    private let remaining: Mutex<Int>
    private let action: @Sendable () -> Void

    init(count: Int, action: @escaping @Sendable () -> Void) {
        remaining = Mutex(count)
        self.action = action
    }

    func done() {
        if remaining.withLock({ $0 -= 1; return $0 == 0 }) { action() }
    }
}

/// Starts the CLI at `cli` with `arguments` and runs `body` with it; whatever
/// happens, the CLI is killed afterwards if it still runs, and the cgroups a
/// killed CLI could not remove are removed.
public func withCLI<T>(
    _ cli: String, _ arguments: [String], _ body: (HostProgram) async throws -> T
) async throws -> T {
    let program = try HostProgram(cli, arguments: arguments)
    defer {
        program.stop()
        HostCensus.removeCgroups(ofSupervisors: [program.pid])
    }
    return try await body(program)
}
