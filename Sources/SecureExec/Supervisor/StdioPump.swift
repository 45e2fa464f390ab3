import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Reads one of a guest's output pipes as chunks arrive, until EOF.
///
/// Owns `fd` (non-blocking read end) and closes it after EOF or `cancel()`.
/// Chunks are delivered in order on `queue`; whatever the guest wrote before
/// it died is still in the pipe and is delivered before `onEnd`. Past `limit`
/// bytes the pipe is still drained (so the guest never blocks on it) but the
/// bytes are dropped and `onTruncated` is called once: memory stays bounded.
///
/// Concurrency: one Dispatch read source on the sandbox's serial queue; the
/// callbacks run there, one at a time, in order. Only `cancel` is called
/// from elsewhere (Dispatch sources may be cancelled from any thread).
final class StdioPump: Sendable {
    private let source: DispatchSourceBox

    init(fd: Int32, queue: DispatchQueue, limit: Int, onChunk: @escaping @Sendable ([UInt8]) -> Void,
         onTruncated: @escaping @Sendable () -> Void, onEnd: @escaping @Sendable () -> Void)
    {
        let delivered = Counter()
        SystemCall.setNonBlocking(fd)
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        self.source = DispatchSourceBox(source: source)
        let box = self.source
        source.setEventHandler {
            var buffer = [UInt8](repeating: 0, count: 65536)
            // Bounded per wake-up so one chatty guest cannot starve the queue.
            for _ in 0..<16 {
                let got = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if got > 0 {
                    let (allowed, truncatedNow) = delivered.take(got, limit: limit)
                    if allowed > 0 { onChunk(Array(buffer[0..<allowed])) }
                    if truncatedNow { onTruncated() }
                    continue
                }
                if got < 0 && (errno == EAGAIN || errno == EINTR) { return }
                box.cancel()  // EOF or a hard error: the stream is over
                return
            }
        }
        source.setCancelHandler {
            SystemCall.close(fd)
            onEnd()
        }
        source.resume()
    }

    func cancel() { source.cancel() }
}

/// Bytes delivered so far by one pump (touched only on its serial queue,
/// but the handler closure must be Sendable).
private final class Counter: Sendable {
    private let value = Mutex((delivered: 0, truncated: false))

    /// How many of `count` new bytes fit under `limit`, and whether this
    /// call is the first to cross it.
    func take(_ count: Int, limit: Int) -> (Int, Bool) {
        value.withLock { state in
            let allowed = max(0, min(count, limit - state.delivered))
            state.delivered += allowed
            let first = allowed < count && !state.truncated
            if allowed < count { state.truncated = true }
            return (allowed, first)
        }
    }
}
