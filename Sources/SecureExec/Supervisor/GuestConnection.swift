import AsyncAlgorithms
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One request/response on a connection, handed between the caller and the
/// connection's task.
///
/// Concurrency: `state` guards the response and its waiter; the body's
/// chunks travel through an `AsyncThrowingChannel` (backpressure: the
/// connection's task waits for the caller to take each one).
final class GuestExchange: Sendable {
    static let staleStep = "stale keep-alive connection"

    let head: HTTPRequestHead
    let body: GuestRequestBody
    /// True when the connection already served a request (so an early EOF means it went stale).
    let reused: Bool
    let events = AsyncThrowingChannel<[UInt8], any Error>()
    private let state = Mutex(State())

    private struct State {
        var response: Result<GuestResponse, SecureExecError>?
        var waiter: CheckedContinuation<GuestResponse, any Error>?
        var complete = false
        var aborted = false
    }

    init(head: HTTPRequestHead, body: GuestRequestBody, reused: Bool) {
        self.head = head
        self.body = body
        self.reused = reused
    }

    var isComplete: Bool { state.withLock { $0.complete } }
    var isAborted: Bool { state.withLock { $0.aborted } }

    /// Waits for the response head.
    func response() async throws -> GuestResponse {
        try await withCheckedThrowingContinuation { continuation in
            let ready: Result<GuestResponse, SecureExecError>? = state.withLock { state in
                if let response = state.response { return response }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }

    func deliver(_ result: Result<GuestResponse, SecureExecError>) {
        let waiter: CheckedContinuation<GuestResponse, any Error>? = state.withLock { state in
            guard state.response == nil else { return nil }
            state.response = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(with: result.mapError { $0 as any Error })
    }

    func finish() {
        state.withLock { $0.complete = true }
        events.finish()
    }

    /// Ends the exchange with `error` wherever it is: before the head, or mid-body.
    func abort(_ error: SecureExecError) {
        state.withLock { $0.aborted = true }
        deliver(.failure(error))
        events.fail(error)
    }

    /// The caller is done before the body ended: stop reading and drop the connection.
    func abandon(_ connection: GuestConnection) {
        state.withLock { $0.aborted = true }
        events.finish()
        connection.close()
    }
}

/// One kept-alive connection: a task that owns the NIO channel and serves
/// exchanges one after another until the guest or we close it.
///
/// Concurrency: one task per connection (on NIO's event loop group) runs
/// its exchanges in order from `jobs`; `served`/`alive` are atomics read
/// by the pool.
final class GuestConnection: Sendable {
    private typealias Channel = NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
    private let channel: any NIOCore.Channel
    private let jobs: AsyncStream<(GuestExchange, @Sendable (Bool) -> Void)>.Continuation
    private let served = Atomic<Bool>(false)
    private let alive = Atomic<Bool>(true)

    var hasServed: Bool { served.load(ordering: .relaxed) }
    var isAlive: Bool { alive.load(ordering: .relaxed) && channel.isActive }

    private init(channel: any NIOCore.Channel, jobs: AsyncStream<(GuestExchange, @Sendable (Bool) -> Void)>.Continuation) {
        self.channel = channel
        self.jobs = jobs
    }

    /// Takes ownership of a connected socket (closed on every path).
    static func adopt(fd: Int32, group: any EventLoopGroup) async throws -> GuestConnection {
        let asyncChannel: Channel
        do {
            asyncChannel = try await ClientBootstrap(group: group).withConnectedSocket(fd) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try Channel(wrappingChannelSynchronously: channel)
                }
            }
        } catch {
            throw SecureExecError(.ioFailed, "could not adopt the guest connection: \(error)", step: "fetch")
        }
        let (stream, continuation) = AsyncStream<(GuestExchange, @Sendable (Bool) -> Void)>.makeStream()
        let connection = GuestConnection(channel: asyncChannel.channel, jobs: continuation)
        Task { await connection.run(asyncChannel, stream) }
        return connection
    }

    func submit(_ exchange: GuestExchange, done: @escaping @Sendable (Bool) -> Void) {
        if case .terminated = jobs.yield((exchange, done)) {
            exchange.abort(SecureExecError(.protocolError, "connection closed", step: GuestExchange.staleStep))
            done(false)
        }
    }

    func close() {
        alive.store(false, ordering: .relaxed)
        channel.close(promise: nil)
    }

    private func run(_ asyncChannel: Channel, _ stream: AsyncStream<(GuestExchange, @Sendable (Bool) -> Void)>) async {
        var leftover: [(GuestExchange, @Sendable (Bool) -> Void)] = []
        do {
            try await asyncChannel.executeThenClose { inbound, outbound in
                var responses = inbound.makeAsyncIterator()
                for await (exchange, done) in stream {
                    let (ended, reusable) = await serve(exchange, outbound, &responses)
                    served.store(true, ordering: .relaxed)
                    if !reusable {
                        alive.store(false, ordering: .relaxed)
                        jobs.finish()
                    }
                    // Back in the pool before the caller sees the body end, so
                    // its next request finds this connection free.
                    done(reusable)
                    if ended { exchange.finish() }
                    if !reusable { break }
                }
            }
        } catch {
            // The channel failed; the exchange it was serving has been told.
        }
        alive.store(false, ordering: .relaxed)
        jobs.finish()
        for await job in stream { leftover.append(job) }
        for (exchange, done) in leftover {
            exchange.abort(SecureExecError(.protocolError, "connection closed", step: GuestExchange.staleStep))
            done(false)
        }
    }

    /// Writes one request and relays its response. Returns whether the
    /// response ended normally (the caller then finishes the body stream)
    /// and whether the connection can serve another.
    private func serve(
        _ exchange: GuestExchange, _ outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>,
        _ responses: inout NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
    ) async -> (ended: Bool, reusable: Bool) {
        var sawHead = false
        do {
            try await outbound.write(.head(exchange.head))
            switch exchange.body {
            case .none: break
            case .bytes(let bytes):
                if !bytes.isEmpty { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: bytes)))) }
            case .stream(let produce):
                do {
                    try await produce { chunk in
                        do {
                            if !chunk.isEmpty { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: chunk)))) }
                        } catch {
                            throw BodyWriteFailure(error: error)
                        }
                    }
                } catch let failure as BodyWriteFailure {
                    throw failure.error
                } catch {
                    // The caller's body stream threw: its error is the answer, not the connection's.
                    throw BodySourceFailure(
                        error: error as? SecureExecError
                            ?? SecureExecError(
                                .ioFailed, "the request body stream failed: \(error)", step: "fetch", underlyingError: error))
                }
            }
            try await outbound.write(.end(nil))
            var keepAlive = false
            while true {
                guard let part = try await responses.next() else {
                    let error =
                        !sawHead && exchange.reused
                        ? SecureExecError(.protocolError, "connection closed", step: GuestExchange.staleStep)
                        : SecureExecError(
                            .protocolError, "the guest closed the connection before the response was complete",
                            step: "fetch")
                    exchange.abort(error)
                    return (false, false)
                }
                if exchange.isAborted { return (false, false) }
                switch part {
                case .head(let head):
                    // 1xx interim responses (but 101) are followed by the real one.
                    if head.status.code / 100 == 1 && head.status.code != 101 { continue }
                    sawHead = true
                    keepAlive = head.isKeepAlive
                    exchange.deliver(
                        .success(
                            GuestResponse(
                                status: Int(head.status.code), reason: head.status.reasonPhrase,
                                headers: head.headers.map { ($0.name, $0.value) },
                                body: GuestResponseBody(events: exchange.events))))
                case .body(let buffer):
                    // Suspends until the caller takes the chunk: that is the backpressure.
                    await exchange.events.send(Array(buffer: buffer))
                case .end:
                    return (true, keepAlive && !exchange.isAborted)
                }
            }
        } catch {
            if let failure = error as? BodySourceFailure {
                exchange.abort(failure.error)
            } else if !exchange.isAborted {
                if !sawHead && exchange.reused {
                    exchange.abort(SecureExecError(.protocolError, "\(error)", step: GuestExchange.staleStep))
                } else {
                    exchange.abort(Self.map(error))
                }
            }
            return (false, false)
        }
    }

    /// Writing a streamed body's chunk failed (the connection's side).
    private struct BodyWriteFailure: Error {
        let error: any Error
    }

    /// A streamed body's source threw (the caller's side).
    private struct BodySourceFailure: Error {
        let error: SecureExecError
    }

    static func map(_ error: any Error) -> SecureExecError {
        if let error = error as? SecureExecError { return error }
        if error is HTTPParserError {
            return SecureExecError(.protocolError, "the guest sent malformed HTTP: \(error)", step: "fetch")
        }
        if let io = error as? IOError {
            return SecureExecError(.protocolError, "the connection to the guest failed: \(io)", step: "fetch", errno: io.errnoCode)
        }
        return SecureExecError(.protocolError, "the connection to the guest failed: \(error)", step: "fetch")
    }
}
