import Foundation
import Synchronization

/// What a process run to completion produced; see `NodeRuntime.exec`.
public struct ExecResult: Sendable {
    /// Everything the process wrote to stdout, up to `Limits.outputBytesPerStream`.
    public var stdout: [UInt8]
    /// Everything the process wrote to stderr, up to `Limits.outputBytesPerStream`.
    public var stderr: [UInt8]
    /// How it ended; `.timedOut` when it ran past the timeout and was killed.
    public var termination: Termination
    /// Wall-clock time from spawn to exit.
    public var duration: Duration
    /// True if stdout or stderr passed `Limits.outputBytesPerStream` and was cut.
    public var truncated: Bool

    /// `stdout` decoded as UTF-8 (invalid sequences replaced).
    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    /// `stderr` decoded as UTF-8 (invalid sequences replaced).
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    /// The exit code, or nil when a signal or a limit ended it.
    public var exitCode: Int32? {
        if case .exited(let code) = termination { return code }
        return nil
    }
    /// True when it ran past the timeout and was killed.
    public var timedOut: Bool { termination == .timedOut }
}

extension NodeRuntime {
    /// Runs `code` to completion and returns its output, how it ended and how
    /// long it took. After `timeout` the process is killed and the result's
    /// termination is `.timedOut` (this does not throw).
    ///
    /// `stdin`, if given, is written to the process and then closed;
    /// otherwise its stdin is closed at once.
    ///
    /// - Parameters:
    ///   - code: the program, ES module or CommonJS, as for `spawn`.
    ///   - arguments: what the code sees in `process.argv.slice(2)`.
    ///   - environment: variables over the defaults, as for `spawn`.
    ///   - workingDirectory: the guest's cwd (default `/workspace`).
    ///   - stdin: bytes for the process to read, then end-of-file; nil: none.
    ///   - timeout: default 60 s; must be positive.
    /// - Throws: what `spawn` throws; `.cancelled` when the calling task is
    ///   cancelled (the process is ended first: SIGTERM, SIGKILL after the
    ///   grace period). How the guest ended is in the result, never an error.
    public func exec(
        _ code: String, arguments: [String] = [], environment: [String: String] = [:],
        workingDirectory: String = "/workspace", stdin: [UInt8]? = nil, timeout: Duration = .seconds(60)
    ) async throws(SecureExecError) -> ExecResult {
        var request = SpawnRequest()
        request.code = code
        return try await runToCompletion(
            request, arguments: arguments, environment: environment, workingDirectory: workingDirectory,
            nodeOptions: [], stdin: stdin, timeout: timeout)
    }

    /// Runs `code` to completion and decodes the value it hands back with the
    /// global `__return(value)` (JSON-serialisable; the last call wins),
    /// separately from its stdout.
    ///
    /// The value travels through a file in the guest's `/tmp`; stdout and
    /// stderr are collected only for the error (use `exec` for both). `stdin`,
    /// if given, is written to the process and then closed. `timeout`
    /// defaults to 60 s; a process that runs past it is killed and the call
    /// throws `.timeout`.
    ///
    /// - Throws: `.guestFailed` with the guest's error message (the tail of
    ///   its stderr) when it exits non-zero, is killed, or never calls
    ///   `__return`; `.timeout` when it ran past `timeout`; `.decodingFailed`
    ///   when the value does not decode as `T`; `.cancelled` when the calling
    ///   task is cancelled (the process is ended first). Also what `spawn`
    ///   throws, and a file error when the preload or the value cannot be
    ///   written to or read from `/tmp` (e.g. `.ioFailed`).
    public func run<T: Decodable>(
        _ code: String, as type: T.Type = T.self, arguments: [String] = [], environment: [String: String] = [:],
        workingDirectory: String = "/workspace", stdin: [UInt8]? = nil, timeout: Duration = .seconds(60)
    ) async throws(SecureExecError) -> T {
        let id = UUID().uuidString.lowercased()
        let resultPath = "/tmp/.secure-exec-return-\(id).json"
        let preloadPath = "/tmp/.secure-exec-return-\(id).cjs"
        // A CommonJS preload defines the global before the user's code (ESM or
        // CommonJS) runs, without touching its text or line numbers.
        let preload = """
            const __secureExecFs = require("node:fs");
            Object.defineProperty(globalThis, "__return", { value: function __return(value) {
              __secureExecFs.writeFileSync(\(Self.jsonString(resultPath)), JSON.stringify(value === undefined ? null : value));
            }, writable: false, enumerable: false });
            """
        try await writeFile(preloadPath, text: preload)
        var request = SpawnRequest()
        request.code = code
        let result = try await runToCompletion(
            request, arguments: arguments, environment: environment, workingDirectory: workingDirectory,
            nodeOptions: ["--require", preloadPath], stdin: stdin, timeout: timeout)
        try? await remove(preloadPath)
        let returned: [UInt8]?
        do {
            returned = try await readFile(resultPath)
            try? await remove(resultPath)
        } catch where error.code == .notFound {
            returned = nil
        }
        if result.termination == .timedOut {
            throw SecureExecError(.timeout, "the guest ran longer than \(timeout) and was killed", step: "run")
        }
        guard result.termination == .exited(0), let returned else {
            let tail = String(result.stderrText.suffix(2000))
            let why =
                result.termination == .exited(0)
                ? "the guest exited without calling __return(value)"
                : "the guest \(result.termination)"
            throw SecureExecError(.guestFailed, tail.isEmpty ? why : "\(why): \(tail)", step: "run")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(returned))
        } catch {
            throw SecureExecError(
                .decodingFailed, "the value the guest returned does not decode as \(T.self): \(error)", step: "run")
        }
    }

    func runToCompletion(
        _ request: SpawnRequest, arguments: [String], environment: [String: String], workingDirectory: String,
        nodeOptions: [String], stdin: [UInt8]?, timeout: Duration
    ) async throws(SecureExecError) -> ExecResult {
        try Self.validate(timeout: timeout, name: "timeout")
        let stdout = OutputBuffer()
        let stderr = OutputBuffer()
        let clock = ContinuousClock()
        let began = clock.now
        let process = try await launch(
            request, arguments: arguments, environment: environment, workingDirectory: workingDirectory,
            timeout: timeout, nodeOptions: nodeOptions, onStdout: { stdout.append($0) }, onStderr: { stderr.append($0) })
        if let stdin {
            // A guest that stops reading must not hold the result hostage:
            // the write gives up when the process ends.
            let writer = Task {
                try? await process.writeStdin(stdin)
                process.closeStdin()
            }
            defer { writer.cancel() }
            let termination = try await process.wait()
            return ExecResult(
                stdout: stdout.bytes, stderr: stderr.bytes, termination: termination, duration: clock.now - began,
                truncated: process.stdoutTruncated || process.stderrTruncated)
        }
        process.closeStdin()
        let termination = try await process.wait()
        return ExecResult(
            stdout: stdout.bytes, stderr: stderr.bytes, termination: termination, duration: clock.now - began,
            truncated: process.stdoutTruncated || process.stderrTruncated)
    }

    static func jsonString(_ text: String) -> String {
        let data = try! JSONSerialization.data(withJSONObject: text, options: [.fragmentsAllowed])
        return String(decoding: data, as: UTF8.self)
    }
}

/// Output collected for `exec`; bounded by `Limits.outputBytesPerStream`.
final class OutputBuffer: Sendable {
    private let storage = Mutex<[UInt8]>([])
    func append(_ chunk: [UInt8]) { storage.withLock { $0 += chunk } }
    var bytes: [UInt8] { storage.withLock { $0 } }
}
