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

    func exited(_ termination: Termination) {
        if json {
            var fields: [String: Any] = ["event": "exited", "reason": Self.reason(termination)]
            if case .exited(let code) = termination { fields["code"] = Int(code) }
            if case .signaled(let signal) = termination { fields["signal"] = signal.name }
            event(fields)
        }
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
