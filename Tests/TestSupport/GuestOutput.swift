import Foundation
import Synchronization

/// A thread-safe byte buffer for a guest's (or a host program's) stdout or stderr.
///
/// Pass `sink` to `spawn(onStdout:)`/`spawn(onStderr:)`. Tests read `bytes`
/// or `text` after `wait()` (which guarantees every byte was delivered), or
/// await `waitUntilContains(_:)` to synchronise with something the guest
/// prints while it keeps running.
public final class GuestOutput: Sendable {
    private struct Waiter {
        let needle: String
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var bytes: [UInt8] = []
        var count = 0
        var waiters: [UUID: Waiter] = [:]
        /// Waits that timed out or were cancelled before their waiter was registered.
        var failedEarly: [UUID: any Error] = [:]
    }

    private let state = Mutex(State())
    /// Keep at most this many bytes (`count` still grows): for floods.
    private let keep: Int

    public init(keep: Int = .max) { self.keep = keep }

    /// A callback for `spawn(onStdout:)` or `spawn(onStderr:)`.
    public var sink: @Sendable ([UInt8]) -> Void { { [self] chunk in self.append(chunk) } }

    /// Everything received so far (up to `keep` bytes).
    public var bytes: [UInt8] { state.withLock { $0.bytes } }

    /// How many bytes arrived in all, kept or not.
    public var count: Int { state.withLock { $0.count } }

    /// Everything received so far, decoded as UTF-8.
    public var text: String { String(decoding: bytes, as: UTF8.self) }

    /// The text split into lines (a final newline does not add an empty line).
    public var lines: [String] {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    public func append(_ chunk: [UInt8]) {
        let satisfied: [CheckedContinuation<Void, any Error>] = state.withLock { state in
            state.count += chunk.count
            if state.bytes.count < keep { state.bytes += chunk.prefix(keep - state.bytes.count) }
            guard !state.waiters.isEmpty else { return [] }
            let text = String(decoding: state.bytes, as: UTF8.self)
            let done = state.waiters.filter { text.contains($0.value.needle) }
            for id in done.keys { state.waiters[id] = nil }
            return done.values.map(\.continuation)
        }
        satisfied.forEach { $0.resume() }
    }

    /// Returns once the output contains `needle`; throws `OutputTimeout` after `timeout`.
    public func waitUntilContains(_ needle: String, timeout: Duration = .seconds(10)) async throws {
        let id = UUID()
        let timer = DeadlineTimer(after: timeout) { [self] in
            self.fail(id, OutputTimeout(needle: needle, timeout: timeout, received: self.text))
        }
        defer { timer.cancel() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let early = state.withLock { state -> Result<Void, any Error>? in
                    if let error = state.failedEarly.removeValue(forKey: id) { return .failure(error) }
                    if String(decoding: state.bytes, as: UTF8.self).contains(needle) { return .success(()) }
                    state.waiters[id] = Waiter(needle: needle, continuation: continuation)
                    return nil
                }
                if let early { continuation.resume(with: early) }
            }
        } onCancel: {
            self.fail(id, CancellationError())
        }
    }

    private func fail(_ id: UUID, _ error: any Error) {
        let waiter = state.withLock { state in
            guard let waiter = state.waiters.removeValue(forKey: id) else {
                state.failedEarly[id] = error
                return nil as Waiter?
            }
            return waiter
        }
        waiter?.continuation.resume(throwing: error)
    }
}

/// The guest did not print what a test waited for in time.
public struct OutputTimeout: Error, CustomStringConvertible {
    public let needle: String
    public let timeout: Duration
    public let received: String

    public var description: String { "no \(needle.debugDescription) in the output within \(timeout); got \(received.debugDescription)" }
}
