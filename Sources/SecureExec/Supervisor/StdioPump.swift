import Dispatch
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Called with a pump's next read once a chunk was handed on; runs it now or later.
typealias ReadGate = @Sendable (@escaping @Sendable () -> Void) -> Void

/// Reads one of a guest's output streams (or a file operation's data socket)
/// as chunks arrive, until EOF.
///
/// Owns `fd` and closes it after EOF or `cancel()`. Chunks are delivered in
/// order on `queue`, then `onEnd`; whatever the guest wrote before it died is
/// still in the pipe and is delivered before `onEnd`. Past `limit` bytes the
/// pipe is still drained (so the guest never blocks on it) but the bytes are
/// dropped and `onTruncated` is called once: memory stays bounded.
///
/// Concurrency: the descriptor is read by NIO (`NIOPipeBootstrap`) on one
/// event loop, one read at a time: the next read is asked for only after
/// `queue` has taken the previous chunk, so a slow consumer slows the guest
/// instead of growing a backlog. Not a Dispatch read source: libdispatch's
/// epoll backend can free a source's bookkeeping while its manager thread
/// still delivers a hang-up for it, when the source is cancelled at EOF.
final class StdioPump: Sendable {
    private let channel: Mutex<(any Channel)?> = Mutex(nil)
    private let cancelled = Atomic<Bool>(false)

    init(
        fd: Int32, queue: DispatchQueue, limit: Int, onChunk: @escaping @Sendable ([UInt8]) -> Void,
        onTruncated: @escaping @Sendable () -> Void, onEnd: @escaping @Sendable () -> Void,
        readGate: ReadGate? = nil,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        let handler = PumpHandler(
            queue: queue, limit: limit, onChunk: onChunk, onTruncated: onTruncated, onEnd: onEnd, readGate: readGate)
        let bootstrap = NIOPipeBootstrap(group: group)
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
            }
        bootstrap.takingOwnershipOfDescriptor(input: fd).whenComplete { [self] result in
            switch result {
            case .success(let channel):
                self.channel.withLock { $0 = channel }
                if self.cancelled.load(ordering: .acquiring) { channel.close(promise: nil) }
            case .failure:
                // NIO closes the descriptor itself once it made a channel of
                // it, so closing it here could close a reused number; the
                // only failures before that are for descriptors that are not
                // sockets or pipes, which the supervisor never passes.
                queue.async(execute: onEnd)
            }
        }
    }

    /// Stops reading and closes the descriptor; `onEnd` still runs once.
    func cancel() {
        cancelled.store(true, ordering: .releasing)
        channel.withLock { $0 }?.close(promise: nil)
    }
}

/// Hands each chunk to the pump's queue and asks for the next read only
/// once the queue has taken it.
private final class PumpHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    private let queue: DispatchQueue
    private let limit: Int
    private let onChunk: @Sendable ([UInt8]) -> Void
    private let onTruncated: @Sendable () -> Void
    private let onEnd: @Sendable () -> Void
    /// Decides when the next read may start (a consumer with a full buffer
    /// holds it back); nil: as soon as the chunk was handed on.
    private let readGate: ReadGate?
    private let delivered = Counter()

    init(
        queue: DispatchQueue, limit: Int, onChunk: @escaping @Sendable ([UInt8]) -> Void,
        onTruncated: @escaping @Sendable () -> Void, onEnd: @escaping @Sendable () -> Void,
        readGate: ReadGate?
    ) {
        self.queue = queue
        self.limit = limit
        self.onChunk = onChunk
        self.onTruncated = onTruncated
        self.onEnd = onEnd
        self.readGate = readGate
    }

    func channelActive(context: ChannelHandlerContext) {
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let (allowed, truncatedNow) = delivered.take(buffer.readableBytes, limit: limit)
        guard allowed > 0 || truncatedNow else {
            // Past the cap: drop the bytes here, without a copy or a hop.
            context.read()
            return
        }
        let bytes = buffer.getBytes(at: buffer.readerIndex, length: allowed) ?? []
        let channel = context.channel
        queue.async { [onChunk, onTruncated, readGate] in
            if !bytes.isEmpty { onChunk(bytes) }
            if truncatedNow { onTruncated() }
            if let readGate { readGate { channel.read() } } else { channel.read() }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        queue.async(execute: onEnd)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A read error ends the stream like EOF.
        context.close(promise: nil)
    }
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
