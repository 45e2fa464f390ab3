import Synchronization

/// The chunks of one output stream waiting for an `OutputChunks` reader.
///
/// Until a reader starts, up to `highWater` bytes are kept and the rest is
/// dropped (`dropped` says so): a guest nobody reads never blocks. Once a
/// reader iterates, nothing more is dropped: the next read from the guest
/// waits while `highWater` bytes are unread, so the guest waits on a full
/// buffer, as on a pipe.
///
/// Concurrency: `state` guards everything; `push`, `gate` and `finish` come
/// from the guest's output queue, `next` from the reader's task. The pump's
/// held-back read and the reader's continuation are resumed outside the lock.
final class ChunkQueue: Sendable {
    static let highWater = 1 << 20

    private struct State {
        var chunks: [[UInt8]] = []
        var head = 0
        var bytes = 0
        var finished = false
        var reading = false
        var dropped = false
        var waiter: CheckedContinuation<[UInt8]?, Never>?
        var heldRead: (@Sendable () -> Void)?

        mutating func pop() -> [UInt8]? {
            guard head < chunks.count else { return nil }
            let chunk = chunks[head]
            head += 1
            bytes -= chunk.count
            if head > 64, head * 2 > chunks.count {
                chunks.removeFirst(head)
                head = 0
            }
            return chunk
        }

        /// The held-back read, if the buffer has room again.
        mutating func releaseRead() -> (@Sendable () -> Void)? {
            guard bytes < ChunkQueue.highWater, let held = heldRead else { return nil }
            heldRead = nil
            return held
        }
    }

    private let state = Mutex(State())

    var dropped: Bool { state.withLock { $0.dropped } }

    /// A reader has started: from now on nothing is dropped.
    func startReading() {
        state.withLock { $0.reading = true }
    }

    /// The reader is gone (its iterator was dropped, e.g. a `break`): back
    /// to keeping at most `highWater` bytes and dropping the rest, so the
    /// guest is never left waiting for a reader that will not come.
    func stopReading() {
        let held = state.withLock { state -> (@Sendable () -> Void)? in
            state.reading = false
            defer { state.heldRead = nil }
            return state.heldRead
        }
        held?()
    }

    func push(_ chunk: [UInt8]) {
        let waiter = state.withLock { state -> CheckedContinuation<[UInt8]?, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            if !state.reading, state.bytes + chunk.count > Self.highWater {
                state.dropped = true
                return nil
            }
            state.chunks.append(chunk)
            state.bytes += chunk.count
            return nil
        }
        waiter?.resume(returning: chunk)
    }

    /// Lets the pump read on now, or once the reader made room.
    func gate(_ readMore: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            guard state.reading, state.bytes >= Self.highWater else { return true }
            state.heldRead = readMore
            return false
        }
        if now { readMore() }
    }

    func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<[UInt8]?, Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    /// The next chunk, or nil at the end of the stream or when the reading
    /// task is cancelled.
    func next() async -> [UInt8]? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let (now, release) = state.withLock { state -> ([UInt8]??, (@Sendable () -> Void)?) in
                    state.reading = true
                    if let chunk = state.pop() { return (.some(chunk), state.releaseRead()) }
                    if state.finished || Task.isCancelled { return (.some(nil), state.releaseRead()) }
                    state.waiter = continuation
                    return (nil, state.releaseRead())
                }
                release?()
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<[UInt8]?, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}
