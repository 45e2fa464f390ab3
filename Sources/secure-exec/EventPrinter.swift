import Foundation
import SecureExec
import Synchronization

/// Writes guest output and lifecycle events: raw bytes to the terminal, or
/// with `--json` one JSON object per line on stdout.
final class EventPrinter: Sendable {
    let json: Bool
    private let lock = Mutex(())

    init(json: Bool) { self.json = json }

    func stdout(_ chunk: [UInt8]) {
        if json { event(["event": "stdout", "data": Data(chunk).base64EncodedString()]) } else { write(1, chunk) }
    }

    func stderr(_ chunk: [UInt8]) {
        if json { event(["event": "stderr", "data": Data(chunk).base64EncodedString()]) } else { write(2, chunk) }
    }

    func spawned(pid: Int32) {
        if json { event(["event": "spawned", "pid": Int(pid)]) }
    }

    func listening(port: Int) {
        if json { event(["event": "listening", "port": port]) } else { note("guest listening on port \(port)") }
    }

    func exposed(url: String) {
        if json { event(["event": "exposed", "url": url]) } else { write(1, Array("exposed at \(url)\n".utf8)) }
    }

    /// How the guest ended: with `--json` the `exited` event; in text mode
    /// a line on stderr for each truncated stream and then the ending,
    /// unless `quiet` (a `run` whose guest exited by itself, which its exit
    /// code already tells).
    func exited(_ ending: GuestEnding, quiet: Bool = false) {
        if json {
            var fields: [String: Any] = ["event": "exited", "reason": Self.reason(ending.termination), "message": ending.message]
            if case .exited(let code) = ending.termination { fields["code"] = Int(code) }
            if case .signaled(let signal) = ending.termination { fields["signal"] = signal.name }
            if !ending.truncatedStreams.isEmpty { fields["truncated"] = ending.truncatedStreams }
            event(fields)
            return
        }
        for line in ending.truncationLines { note(line) }
        if !quiet { note(ending.message) }
    }

    /// A refused egress attempt: with `--json` one `egress-denied` event,
    /// otherwise one line on stderr.
    func egress(_ denied: EgressEvent) {
        guard json else {
            note(denied.description)
            return
        }
        var fields: [String: Any] = ["event": "egress-denied", "reason": denied.reason.rawValue, "detail": denied.detail]
        if let host = denied.host { fields["host"] = host }
        if let address = denied.address { fields["address"] = address }
        if let port = denied.port { fields["port"] = port }
        event(fields)
    }

    func note(_ text: String) { write(2, Array("secure-exec: \(text)\n".utf8)) }

    static func reason(_ termination: Termination) -> String {
        switch termination {
        case .exited: "exited"
        case .signaled: "signaled"
        case .outOfMemory: "out-of-memory"
        case .timedOut: "timed-out"
        case .cpuLimit: "cpu-limit"
        @unknown default: "unknown"
        }
    }

    private func event(_ fields: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) else { return }
        write(1, Array(data) + [0x0a])
    }

    private func write(_ fd: Int32, _ bytes: [UInt8]) {
        lock.withLock { _ in
            var offset = 0
            while offset < bytes.count {
                let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
                if written <= 0 { return }
                offset += written
            }
        }
    }
}

/// How a guest ended, with what the CLI knows about why: the limits it ran
/// under and what the operator's signals did.
struct GuestEnding {
    var termination: Termination
    var stop: Lifecycle.Stop = .none
    var grace: Duration = .seconds(1)
    var limits = Limits()
    /// The `--timeout` the guest ran with, if any.
    var timeout: Duration?
    var stdoutTruncated = false
    var stderrTruncated = false

    init(_ termination: Termination) { self.termination = termination }

    init(_ process: GuestProcess, _ termination: Termination, lifecycle: Lifecycle, limits: Limits, timeout: Duration?) {
        self.termination = termination
        stop = lifecycle.stop
        grace = lifecycle.grace
        self.limits = limits
        self.timeout = timeout
        stdoutTruncated = process.stdoutTruncated
        stderrTruncated = process.stderrTruncated
    }

    /// One line, e.g. "guest exited with code 0", "guest killed: out of memory (limit 256 MiB)".
    var message: String {
        switch termination {
        case .exited(let code):
            return "guest exited with code \(code)"
        case .signaled(let signal) where signal == .kill && stop == .escalated:
            return "guest killed by SIGKILL after it ignored SIGTERM for \(Units.describe(grace))"
        case .signaled(let signal) where signal == .kill && stop == .forced:
            return "guest killed by SIGKILL at the second interrupt"
        case .signaled(let signal):
            return "guest killed by \(signal.name)"
        case .outOfMemory:
            return "guest killed: out of memory" + (limits.memoryBytes.map { " (limit \(Units.describe(bytes: $0)))" } ?? "")
        case .timedOut:
            return "guest killed: timed out" + (timeout.map { " after \(Units.describe($0))" } ?? "")
        case .cpuLimit:
            return "guest killed: CPU time limit" + (limits.cpuTimePerProcess.map { " (\(Units.describe($0)))" } ?? "")
        @unknown default:
            return "guest \(termination)"
        }
    }

    var truncatedStreams: [String] {
        (stdoutTruncated ? ["stdout"] : []) + (stderrTruncated ? ["stderr"] : [])
    }

    /// "guest output truncated: stdout passed 64 MiB", one per stream.
    var truncationLines: [String] {
        truncatedStreams.map { "guest output truncated: \($0) passed \(Units.describe(bytes: limits.outputBytesPerStream))" }
    }

    /// Whether there is nothing to say beyond the exit code: the guest exited by itself, whole.
    var isPlainExit: Bool {
        if case .exited = termination { return stop == .none && truncatedStreams.isEmpty }
        return false
    }
}
