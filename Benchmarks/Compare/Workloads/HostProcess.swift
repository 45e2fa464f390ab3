import CPhases
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A program the harness starts on the host (bare `node`, `bwrap`, `wrk`),
/// with posix_spawn, and reads with blocking calls bounded by `poll`.
///
/// Foundation's `Process` does the same posix_spawn, but its
/// `waitUntilExit` spins the run loop in 50 ms slices, which would round
/// every exit time up; so the launch is the same call, made directly.
/// Not Sendable: one task owns it. Dropping it unreaped stops the child
/// (SIGTERM, then SIGKILL after 0.5 s).
public final class HostProcess {
    public let pid: pid_t
    /// `monotonicNanos()` just before posix_spawn.
    public var launchedAt: Int64 { clocks.monotonic }
    /// Both clocks, read just before posix_spawn.
    public let clocks: ClockPair
    private var stdoutFD: Int32
    private var stderrFD: Int32
    private var output: [UInt8] = []
    private var errors: [UInt8] = []
    private var status: Int32?

    /// Starts `arguments[0]` (an absolute path) with exactly `environment`.
    /// stdout and stderr go to pipes this object reads; stdin is /dev/null.
    public init(_ arguments: [String], environment: [String: String]) throws {
        var stdoutPipe: [Int32] = [-1, -1]
        var stderrPipe: [Int32] = [-1, -1]
        guard cphases_pipe_cloexec(&stdoutPipe) == 0 else { throw BenchmarkFailure("pipe2: \(String(cString: strerror(errno)))") }
        guard cphases_pipe_cloexec(&stderrPipe) == 0 else {
            stdoutPipe.forEach { close($0) }
            throw BenchmarkFailure("pipe2: \(String(cString: strerror(errno)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, stderrPipe[1], 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var defaultSignals = sigset_t()
        sigemptyset(&defaultSignals)
        sigaddset(&defaultSignals, SIGPIPE)
        sigaddset(&defaultSignals, SIGTERM)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] =
            environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        clocks = ClockPair()
        let spawned = posix_spawn(&child, arguments[0], &actions, &attributes, argv, envp)
        close(stdoutPipe[1])
        close(stderrPipe[1])
        guard spawned == 0 else {
            close(stdoutPipe[0])
            close(stderrPipe[0])
            throw BenchmarkFailure("posix_spawn \(arguments[0]): \(String(cString: strerror(spawned)))")
        }
        pid = child
        stdoutFD = stdoutPipe[0]
        stderrFD = stderrPipe[0]
    }

    deinit {
        // A workload that failed half-way must not leave a server running.
        if status == nil { stop(grace: .milliseconds(500)) }
        if stdoutFD >= 0 { close(stdoutFD) }
        if stderrFD >= 0 { close(stderrFD) }
    }

    /// Everything read from stdout so far.
    public var stdout: String { String(decoding: output, as: UTF8.self) }
    /// Whatever stderr holds right now (read without blocking); for error messages.
    public var stderr: String {
        drainStderr()
        return String(decoding: errors, as: UTF8.self)
    }

    /// Blocks until stdout has at least one byte; returns the time it was read.
    public func waitForFirstByte(timeout: Duration = .seconds(20)) throws -> Int64 {
        try readStdout(until: { !$0.isEmpty }, timeout: timeout, what: "its first byte of output")
    }

    /// Blocks until stdout contains `needle`; returns the time the read that completed it returned.
    public func waitForOutput(_ needle: String, timeout: Duration = .seconds(20)) throws -> Int64 {
        let bytes = Array(needle.utf8)
        return try readStdout(until: { $0.containsBytes(bytes) }, timeout: timeout, what: "\"\(needle)\"")
    }

    /// Blocks until stdout ends (the child closed it, normally by exiting).
    public func readToEnd(timeout: Duration = .seconds(30)) throws {
        _ = try readStdout(until: { _ in false }, timeout: timeout, what: "the end of its output", untilEOF: true)
    }

    private func readStdout(
        until done: ([UInt8]) -> Bool, timeout: Duration, what: String, untilEOF: Bool = false
    ) throws -> Int64 {
        let deadline = monotonicNanos() + Int64(timeout.components.seconds) * 1_000_000_000
            + timeout.components.attoseconds / 1_000_000_000
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            if !untilEOF && done(output) { return monotonicNanos() }
            guard stdoutFD >= 0 else {
                if untilEOF { return monotonicNanos() }
                throw BenchmarkFailure("\(describe) ended its output before \(what); stderr: \(stderr)")
            }
            let remaining = deadline - monotonicNanos()
            guard remaining > 0 else { throw BenchmarkFailure("\(describe) did not print \(what) in \(timeout); stderr: \(stderr)") }
            var entry = pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, Int32(min(remaining / 1_000_000 + 1, 1000)))
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 { continue }
            let count = buffer.withUnsafeMutableBytes { read(stdoutFD, $0.baseAddress, $0.count) }
            let readAt = monotonicNanos()
            if count < 0 && errno == EINTR { continue }
            if count <= 0 {
                close(stdoutFD)
                stdoutFD = -1
                continue
            }
            output += buffer[0..<count]
            if !untilEOF && done(output) { return readAt }
        }
    }

    private var describe: String { "process \(pid)" }

    private func drainStderr() {
        guard stderrFD >= 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            var entry = pollfd(fd: stderrFD, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 0) > 0 else { return }
            let count = buffer.withUnsafeMutableBytes { read(stderrFD, $0.baseAddress, $0.count) }
            if count <= 0 {
                close(stderrFD)
                stderrFD = -1
                return
            }
            errors += buffer[0..<count]
        }
    }

    /// Blocks until the child exits; returns its wait status (also on later calls).
    @discardableResult
    public func wait() -> Int32 {
        if let status { return status }
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        status = raw
        return raw
    }

    /// Blocks until the child exits; returns the time waitpid returned.
    public func waitForExit() -> Int64 {
        wait()
        return monotonicNanos()
    }

    /// Whether it exited with status 0.
    public var succeeded: Bool {
        guard let status else { return false }
        return status & 0x7f == 0 && (status >> 8) & 0xff == 0
    }

    /// Sends `signal` (SIGTERM by default) unless it was already reaped.
    public func signal(_ signal: Int32 = SIGTERM) {
        if status == nil { kill(pid, signal) }
    }

    /// SIGTERM, and SIGKILL if it is still there after `grace`; then reaps it.
    public func stop(grace: Duration = .seconds(2)) {
        guard status == nil else { return }
        kill(pid, SIGTERM)
        let deadline = monotonicNanos() + Int64(grace.components.seconds) * 1_000_000_000
            + grace.components.attoseconds / 1_000_000_000
        var raw: Int32 = 0
        while true {
            let reaped = waitpid(pid, &raw, WNOHANG)
            if reaped == pid {
                status = raw
                return
            }
            if reaped < 0 && errno != EINTR { return }
            if monotonicNanos() > deadline {
                kill(pid, SIGKILL)
                wait()
                return
            }
            usleep(1000)
        }
    }
}

extension Array where Element == UInt8 {
    func containsBytes(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, count >= needle.count else { return needle.isEmpty }
        for start in 0...(count - needle.count) where self[start] == needle[0] {
            if self[start..<(start + needle.count)].elementsEqual(needle) { return true }
        }
        return false
    }
}
