import Foundation
import SecureExec
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

// Helpers for the escape suites (EscapeTests.swift): the native probe, guest
// runs with their output collected, host sockets a guest must not reach, and
// /proc readings of host processes. Every name starts with `Escape` so the
// other suites' helpers never collide with these.

/// Whether the escape suites run: they build sandboxes, which needs root. Under
/// `CI=true` they run anyway, so a CI job without root fails instead of skipping.
enum EscapeGate {
    static var enabled: Bool { geteuid() == 0 || ProcessInfo.processInfo.environment["CI"] == "true" }
}

/// Paths of the package and of the build this test bundle is part of.
enum EscapePaths {
    /// The package root: this file is `<root>/Tests/SecureExecTests/EscapeSupport.swift`.
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The folder holding the running test bundle and the package's other products.
    static var buildProducts: String {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (executable as NSString).deletingLastPathComponent
    }

    /// The guest root skeleton's /etc, as the host sees it.
    static var skeletonEtc: String { packageRoot + "/rootfs/skeleton/etc" }
}

/// A prerequisite of the test is missing; the message says how to get it.
struct EscapePrerequisiteMissing: Error, CustomStringConvertible {
    let description: String
}

/// The static native probe (`Tests/Probes/probe.c`) and how guests run it.
enum EscapeProbe {
    /// Where the probe's host folder is mounted in the sandbox.
    static let guestDirectory = "/mnt/probe"

    /// The built probe on the host: `SECURE_EXEC_PROBE`, else `<root>/.build/probes/secure-exec-probe`.
    /// Throws (so the test fails, never skips) when it has not been built.
    static func hostPath() throws -> String {
        let path = ProcessInfo.processInfo.environment["SECURE_EXEC_PROBE"]
            ?? EscapePaths.packageRoot + "/.build/probes/secure-exec-probe"
        guard access(path, X_OK) == 0 else {
            throw EscapePrerequisiteMissing(
                description: "the native escape probe \(path) is missing: run `make probes` "
                    + "(or set SECURE_EXEC_PROBE to a built secure-exec-probe)")
        }
        return path
    }

    /// Shows the folder holding `hostBinary` at `/mnt/probe`, read-only.
    static func mount(for hostBinary: String) -> Mount {
        Mount(host: (hostBinary as NSString).deletingLastPathComponent, guest: guestDirectory)
    }

    /// The probe's path inside the sandbox when `hostBinary` is mounted with `mount(for:)`.
    static func guestPath(for hostBinary: String) -> String {
        guestDirectory + "/" + (hostBinary as NSString).lastPathComponent
    }

    /// A node guest that runs the probe given as its first argument with the
    /// rest as the probe's arguments, and prints the probe's one line (or
    /// what went wrong starting it).
    static let runner = """
        const { spawnSync } = require("child_process");
        const [binary, ...probeArguments] = process.argv.slice(2);
        const result = spawnSync(binary, probeArguments, { encoding: "utf8", timeout: 60000 });
        if (result.error) console.log("SPAWN-ERROR " + result.error.code);
        else if (result.signal) console.log("SIGNALED " + result.signal + " " + (result.stdout || ""));
        else process.stdout.write(result.stdout);
        if (result.stderr) process.stderr.write(result.stderr);
        """

    /// Permissions for a probe guest: node must start the probe, and the socket
    /// probes need the network rules in place to test that raw types stay out.
    static let permissions = Permissions(network: .allow, childProcess: .allow)

    /// Runs probe `name` in `runtime` (which must have the probe mounted) and returns its line.
    static func run(
        _ name: String, arguments: [String] = [], hostBinary: String, in runtime: NodeRuntime
    ) async throws -> EscapeRun {
        try await runtime.escapeRun(runner, arguments: [guestPath(for: hostBinary), name] + arguments)
    }

    /// The probe names the binary itself lists (`secure-exec-probe list`, run on the host).
    static func listed(by hostBinary: String) throws -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: hostBinary)
        process.arguments = ["list"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}

/// Creates a runtime, runs `body` with it and disposes it on every path
/// (return, throw, cancellation).
func withEscapeRuntime<Result: Sendable>(
    permissions: Permissions = Permissions(), limits: Limits = Limits(), mounts: [Mount] = [],
    _ body: (NodeRuntime) async throws -> Result
) async throws -> Result {
    let runtime = try await NodeRuntime.create(permissions: permissions, limits: limits, mounts: mounts)
    do {
        let result = try await body(runtime)
        await runtime.dispose()
        return result
    } catch {
        await runtime.dispose()
        throw error
    }
}

/// Bounds how many sandboxes the parameterized probe suite builds at once, so
/// ninety test cases do not start ninety sandboxes together on a small machine.
actor EscapeSlots {
    static let probes = EscapeSlots(count: 6)

    private var free: Int
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(count: Int) { free = count }

    /// Runs `body` once a slot is free.
    nonisolated func withSlot<Result: Sendable>(_ body: () async throws -> Result) async throws -> Result {
        await acquire()
        do {
            let result = try await body()
            await release()
            return result
        } catch {
            await release()
            throw error
        }
    }

    private func acquire() async {
        if free > 0 {
            free -= 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    private func release() {
        if waiting.isEmpty {
            free += 1
        } else {
            waiting.removeFirst().resume()
        }
    }
}

/// A guest's stdout or stderr as it arrives, safe to feed from the pump's thread.
final class EscapeOutput: Sendable {
    private struct Waiter {
        let needle: String
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var bytes: [UInt8] = []
        var count = 0
        var waiters: [UUID: Waiter] = [:]
    }

    private let state = Mutex(State())
    /// Keep at most this many bytes (the count still grows): for floods.
    private let keep: Int

    init(keep: Int = .max) { self.keep = keep }

    /// A callback for `spawn(onStdout:)` or `spawn(onStderr:)`.
    var sink: @Sendable ([UInt8]) -> Void { { [self] chunk in self.append(chunk) } }

    var bytes: [UInt8] { state.withLock { $0.bytes } }
    var text: String { String(decoding: bytes, as: UTF8.self) }
    /// How many bytes arrived in all.
    var count: Int { state.withLock { $0.count } }

    private func append(_ chunk: [UInt8]) {
        let ready: [CheckedContinuation<Void, any Error>] = state.withLock { state in
            state.count += chunk.count
            if state.bytes.count < keep { state.bytes += chunk.prefix(keep - state.bytes.count) }
            guard !state.waiters.isEmpty else { return [] }
            let text = String(decoding: state.bytes, as: UTF8.self)
            let done = state.waiters.filter { text.contains($0.value.needle) }
            for id in done.keys { state.waiters[id] = nil }
            return done.values.map(\.continuation)
        }
        ready.forEach { $0.resume() }
    }

    /// Returns once the text contains `needle`; throws after `timeout`.
    func waitFor(_ needle: String, timeout: Duration = .seconds(20)) async throws {
        let id = UUID()
        let timer = Task { [self] in
            guard (try? await Task.sleep(for: timeout)) != nil else { return }
            resolve(id, with: EscapePrerequisiteMissing(description: "no \(needle.debugDescription) within \(timeout); got \(text.debugDescription)"))
        }
        defer { timer.cancel() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let present = state.withLock { state -> Bool in
                    if String(decoding: state.bytes, as: UTF8.self).contains(needle) { return true }
                    state.waiters[id] = Waiter(needle: needle, continuation: continuation)
                    return false
                }
                if present { continuation.resume() }
            }
        } onCancel: {
            resolve(id, with: CancellationError())
        }
    }

    private func resolve(_ id: UUID, with error: any Error) {
        state.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume(throwing: error)
    }
}

/// A guest that was started with its output collected.
struct EscapeStarted: Sendable {
    let process: GuestProcess
    let stdout: EscapeOutput
    let stderr: EscapeOutput

    func finish() async -> EscapeRun {
        let termination = await process.wait()
        return EscapeRun(termination: termination, stdout: stdout.text, stderr: stderr.text)
    }
}

/// How a guest ended and what it printed.
struct EscapeRun: Sendable, CustomStringConvertible {
    let termination: Termination
    let stdout: String
    let stderr: String

    /// The first line of stdout.
    var line: String { stdout.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? "" }

    var description: String { "\(termination); stdout: \(stdout.debugDescription); stderr: \(stderr.debugDescription)" }

    /// Stdout as JSON.
    func json<Value: Decodable>(_ type: Value.Type) throws -> Value {
        try JSONDecoder().decode(type, from: Data(stdout.utf8))
    }
}

extension NodeRuntime {
    /// Spawns `code` with its output collected.
    func escapeStart(
        _ code: String, arguments: [String] = [], timeout: Duration? = nil, stdoutKeep: Int = .max
    ) async throws -> EscapeStarted {
        let stdout = EscapeOutput(keep: stdoutKeep)
        let stderr = EscapeOutput()
        let process = try await spawn(
            code, arguments: arguments, timeout: timeout, onStdout: stdout.sink, onStderr: stderr.sink)
        return EscapeStarted(process: process, stdout: stdout, stderr: stderr)
    }

    /// Runs `code` to its end.
    func escapeRun(_ code: String, arguments: [String] = []) async throws -> EscapeRun {
        try await escapeStart(code, arguments: arguments).finish()
    }
}

/// `text` as a JavaScript string literal (JSON is valid JavaScript).
func escapeJS(_ text: String) -> String {
    let data = try! JSONEncoder().encode(text)
    return String(decoding: data, as: UTF8.self)
}

/// Waits for `task` up to `limit`; nil if it has not finished by then (it keeps running).
func escapeValue<Value: Sendable>(of task: Task<Value, Never>, within limit: Duration) async -> Value? {
    let decided = Mutex(false)
    return await withCheckedContinuation { (continuation: CheckedContinuation<Value?, Never>) in
        let decide: @Sendable (Value?) -> Void = { value in
            let first = decided.withLock { claimed in
                defer { claimed = true }
                return !claimed
            }
            if first { continuation.resume(returning: value) }
        }
        Task { decide(await task.value) }
        Task {
            try? await Task.sleep(for: limit)
            decide(nil)
        }
    }
}

/// A host socket a guest must not be able to reach: TCP on 127.0.0.1 or ::1 at
/// a kernel-chosen port, or an abstract unix socket. Nothing accepts while the
/// guest runs; the kernel queues any completed connection, so `drain()`
/// afterwards counts every connection anyone made. Close it with `close()`.
final class EscapeHostListener {
    enum Kind: Sendable, CustomStringConvertible {
        case ipv4Loopback
        case ipv6Loopback
        case abstractUnix(String)

        var description: String {
            switch self {
            case .ipv4Loopback: "127.0.0.1"
            case .ipv6Loopback: "[::1]"
            case .abstractUnix(let name): "@\(name)"
            }
        }
    }

    let kind: Kind
    private(set) var fd: Int32
    /// The TCP port (0 for a unix socket).
    private(set) var port = 0

    init(_ kind: Kind) throws {
        self.kind = kind
        let family: Int32 =
            switch kind {
            case .ipv4Loopback: AF_INET
            case .ipv6Loopback: AF_INET6
            case .abstractUnix: AF_UNIX
            }
        fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw EscapeSocketError(step: "socket", code: errno) }
        do {
            try withAddress { address, length in
                guard bind(fd, address, length) == 0 else { throw EscapeSocketError(step: "bind \(kind)", code: errno) }
            }
            guard listen(fd, 128) == 0 else { throw EscapeSocketError(step: "listen", code: errno) }
            port = try boundPort()
        } catch {
            Glibc.close(fd)
            fd = -1
            throw error
        }
    }

    /// Calls `body` with this listener's address (port as bound, 0 before `bind`).
    private func withAddress<Result>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> Result) rethrows -> Result {
        switch kind {
        case .ipv4Loopback:
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
            address.sin_port = UInt16(port).bigEndian
            return try withUnsafePointer(to: &address) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .ipv6Loopback:
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_addr = in6addr_loopback
            address.sin6_port = UInt16(port).bigEndian
            return try withUnsafePointer(to: &address) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        case .abstractUnix(let name):
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(name.utf8)
            withUnsafeMutableBytes(of: &address.sun_path) { path in
                path[0] = 0  // abstract: the name lives in the network namespace, not on disk
                for (index, byte) in bytes.enumerated() { path[index + 1] = byte }
            }
            let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
            return try withUnsafePointer(to: &address) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, length) }
            }
        }
    }

    private func boundPort() throws -> Int {
        switch kind {
        case .abstractUnix: return 0
        case .ipv4Loopback:
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let ok = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
            }
            guard ok else { throw EscapeSocketError(step: "getsockname", code: errno) }
            return Int(UInt16(bigEndian: address.sin_port))
        case .ipv6Loopback:
            var address = sockaddr_in6()
            var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            let ok = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
            }
            guard ok else { throw EscapeSocketError(step: "getsockname", code: errno) }
            return Int(UInt16(bigEndian: address.sin6_port))
        }
    }

    /// Accepts and closes, without blocking, every queued connection; returns how many there were.
    func drain() -> Int {
        var count = 0
        while true {
            let connection = accept(fd, nil, nil)
            if connection < 0 {
                if errno == EINTR { continue }
                return count
            }
            Glibc.close(connection)
            count += 1
        }
    }

    /// Connects from the host (the control: the listener does count real connections).
    func connectFromHost() throws {
        let family: Int32 =
            switch kind {
            case .ipv4Loopback: AF_INET
            case .ipv6Loopback: AF_INET6
            case .abstractUnix: AF_UNIX
            }
        let client = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard client >= 0 else { throw EscapeSocketError(step: "socket", code: errno) }
        defer { Glibc.close(client) }
        try withAddress { address, length in
            guard connect(client, address, length) == 0 else { throw EscapeSocketError(step: "connect", code: errno) }
        }
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    deinit { close() }
}

struct EscapeSocketError: Error, CustomStringConvertible {
    let step: String
    let code: Int32
    var description: String { "\(step): \(String(cString: strerror(code)))" }
}

/// One host process as /proc shows it, identified by pid and start time (so a
/// reused pid is never mistaken for the process that had it before).
struct EscapeHostProcess: Sendable, Hashable, CustomStringConvertible {
    let pid: Int32
    let parent: Int32
    let state: String
    let startTime: UInt64
    let commandLine: [String]

    var description: String { "\(pid) (parent \(parent), \(state)) \(commandLine.joined(separator: " "))" }

    var isSandboxInit: Bool { commandLine.first == "secure-exec-init" }
    var isGuestNode: Bool { commandLine.contains { $0.contains(".secure-exec-entry") } }
    /// Gone, or a zombie waiting for its parent: it runs nothing any more.
    var isRunning: Bool { state != "Z" && state != "X" }
}

/// Reads host processes and this process's memory from /proc.
enum EscapeProc {
    static func process(_ pid: Int32) -> EscapeHostProcess? {
        guard let stat = readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        // "pid (comm) S ppid ... starttime(22nd field)": parse after the last ")" (comm may hold anything).
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let parent = Int32(fields[1]), let start = UInt64(fields[19]) else { return nil }
        var commandLine = (readText("/proc/\(pid)/cmdline") ?? "").split(separator: "\0", omittingEmptySubsequences: false).map(String.init)
        if commandLine.last == "" { commandLine.removeLast() }
        return EscapeHostProcess(pid: pid, parent: parent, state: String(fields[0]), startTime: start, commandLine: commandLine)
    }

    static func all() -> [EscapeHostProcess] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap(Int32.init).compactMap(process)
    }

    /// True while the process with this pid and start time still runs (not a zombie).
    static func isRunning(_ recorded: EscapeHostProcess) -> Bool {
        guard let now = process(recorded.pid) else { return false }
        return now.startTime == recorded.startTime && now.isRunning
    }

    static func environment(of pid: Int32) -> [String: String] {
        var environment: [String: String] = [:]
        for entry in (readText("/proc/\(pid)/environ") ?? "").split(separator: "\0") {
            guard let equals = entry.firstIndex(of: "=") else { continue }
            environment[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
        }
        return environment
    }

    /// This process's resident set size in bytes.
    static func residentBytes() -> Int {
        let status = readText("/proc/self/status") ?? ""
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let kilobytes = line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
            return kilobytes * 1024
        }
        return 0
    }

    /// A whole file with read(2) (procfs files report size 0).
    static func readText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return count == 0 ? String(decoding: bytes, as: UTF8.self) : nil }
            bytes += chunk[..<count]
        }
    }
}

/// A temporary host directory, removed by `remove()` (call it in a `defer`).
struct EscapeTemporaryDirectory {
    let path: String

    /// Creates it mode 0755, so a guest (another uid) can read what a test puts in it.
    init() throws {
        var template = Array((NSTemporaryDirectory() + "/secure-exec-escape-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw EscapeSocketError(step: "mkdtemp", code: errno) }
        path = String(cString: made)
        guard chmod(path, 0o755) == 0 else {
            let code = errno
            try? FileManager.default.removeItem(atPath: path)
            throw EscapeSocketError(step: "chmod temp dir", code: code)
        }
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Extended attributes on host files. Glibc's Swift module leaves out
/// <sys/xattr.h>, so the two libc functions are looked up by name.
enum EscapeXattr {
    private typealias SetFunction = @convention(c) (
        UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeRawPointer?, Int, Int32
    ) -> Int32
    private typealias GetFunction = @convention(c) (
        UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int
    ) -> Int

    private static func function<Function>(_ name: String, as type: Function.Type) throws -> Function {
        guard let symbol = dlsym(nil, name) else {
            throw EscapePrerequisiteMissing(description: "libc has no \(name)")
        }
        return unsafeBitCast(symbol, to: type)
    }

    /// setxattr(2): sets attribute `name` of `path` to `value`.
    static func set(_ path: String, name: String, value: [UInt8]) throws {
        let setxattr = try function("setxattr", as: SetFunction.self)
        let result = value.withUnsafeBytes { setxattr(path, name, $0.baseAddress, $0.count, 0) }
        guard result == 0 else { throw EscapeSocketError(step: "setxattr \(name) on \(path)", code: errno) }
    }

    /// getxattr(2): the value of attribute `name` of `path`.
    static func get(_ path: String, name: String) throws -> [UInt8] {
        let getxattr = try function("getxattr", as: GetFunction.self)
        var buffer = [UInt8](repeating: 0, count: 256)
        let length = buffer.withUnsafeMutableBytes { getxattr(path, name, $0.baseAddress, $0.count) }
        guard length >= 0 else { throw EscapeSocketError(step: "getxattr \(name) on \(path)", code: errno) }
        return Array(buffer[..<length])
    }
}

/// Samples this process's resident memory every 20 ms from creation until
/// `stop()`, keeping the peak: a measurement, not a synchronisation.
final class EscapeMemorySampler: Sendable {
    private struct State {
        var peak: Int
        var running = true
    }

    private let baseline: Int
    private let state: Mutex<State>
    private let task = Mutex<Task<Void, Never>?>(nil)

    init() {
        baseline = EscapeProc.residentBytes()
        state = Mutex(State(peak: baseline))
        let sampler = Task { [self] in
            // Bounded, so a test that fails before `stop()` leaves no endless sampler behind.
            let deadline = ContinuousClock.now.advanced(by: .seconds(180))
            while state.withLock({ $0.running }) && ContinuousClock.now < deadline {
                let now = EscapeProc.residentBytes()
                state.withLock { $0.peak = max($0.peak, now) }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        task.withLock { $0 = sampler }
    }

    /// Takes a last sample and stops.
    func stop() async {
        let now = EscapeProc.residentBytes()
        state.withLock {
            $0.peak = max($0.peak, now)
            $0.running = false
        }
        await task.withLock { $0 }?.value
    }

    /// How far the peak rose above the memory at creation.
    var peakGrowth: Int { state.withLock { $0.peak } - baseline }
}

/// Reads a pipe to its end on a thread of its own, with plain blocking reads.
///
/// The reader keeps the `Pipe` (and so its descriptors) alive until end of
/// file, so no descriptor is closed under a read in progress.
final class EscapePipeReader: Sendable {
    /// What was read.
    let output = EscapeOutput()
    /// Gets "end" once the pipe reached end of file (or failed).
    let ended = EscapeOutput()

    init(_ pipe: Pipe) {
        let pipe = pipe
        let output = output
        let ended = ended
        let thread = Thread {
            let fd = pipe.fileHandleForReading.fileDescriptor
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { break }
                output.sink(Array(buffer[..<count]))
            }
            withExtendedLifetime(pipe) {}
            ended.sink(Array("end".utf8))
        }
        thread.start()
    }
}
