import NIOCore

/// Pipes two channels into each other: what one reads, the other writes.
///
/// Reads are pulled only while the partner is writable (backpressure); the
/// end of one side's input shuts down the other's output (half-close); either
/// side closing closes both. With a `counter`, every chunk read is counted
/// first, and a chunk the counter refuses closes both instead of passing.
final class ChannelGlue: ChannelDuplexHandler, @unchecked Sendable {
    // @unchecked: every member is touched only on the shared event loop both
    // channels live on (the guest channel is bootstrapped on the client's loop).
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: ChannelGlue?
    private let counter: ByteCounter?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    /// Decides whether `bytes` more may pass; false closes the pair.
    typealias ByteCounter = @Sendable (_ bytes: Int) -> Bool

    private init(counter: ByteCounter?) { self.counter = counter }

    static func join(_ first: any Channel, _ second: any Channel, counter: ByteCounter? = nil) async throws {
        precondition(first.eventLoop === second.eventLoop)
        try await first.eventLoop.submit {
            let a = ChannelGlue(counter: counter)
            let b = ChannelGlue(counter: counter)
            a.partner = b
            b.partner = a
            try first.pipeline.syncOperations.addHandler(a)
            try second.pipeline.syncOperations.addHandler(b)
        }.get()
        // Both channels start with autoRead off, so nothing is read (and
        // dropped) before its partner exists, even from a server that speaks
        // first; from here on NIO reads, and `read(context:)` holds reads back
        // while the partner cannot take more.
        try await first.setOption(.autoRead, value: true).get()
        try await second.setOption(.autoRead, value: true).get()
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if let counter, !counter(buffer.readableBytes) {
            partner?.closeAll()
            context.close(promise: nil)
            return
        }
        partner?.write(buffer)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.closeAll()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            partner?.shutdownOutput()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.readIfPending() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if partner?.isWritable ?? true {
            context.read()
        } else {
            pendingRead = true
        }
    }

    private var isWritable: Bool { context?.channel.isWritable ?? false }

    private func write(_ buffer: ByteBuffer) { context?.write(wrapOutboundOut(buffer), promise: nil) }
    private func flush() { context?.flush() }
    private func shutdownOutput() { context?.close(mode: .output, promise: nil) }
    private func closeAll() { context?.close(promise: nil) }

    private func readIfPending() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }
}
