import AsyncAlgorithms
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A request body: nothing, bytes, or chunks produced while sending
/// (sent with chunked transfer-encoding).
package enum GuestRequestBody: Sendable {
    case none
    case bytes([UInt8])
    /// Calls `write` once per chunk, in order; `write` suspends while the guest is slow.
    case stream(@Sendable (_ write: @Sendable ([UInt8]) async throws -> Void) async throws -> Void)

    var isReplayable: Bool {
        if case .stream = self { return false }
        return true
    }
}

/// A response as it arrives: status and headers at once, the body as chunks.
package struct GuestResponse: Sendable {
    package var status: Int
    package var reason: String
    package var headers: [(String, String)]
    /// Body chunks in order as the guest sends them; ends at the response's
    /// end, throws `SecureExecError` if the connection breaks first.
    package var body: GuestResponseBody
}

/// The body of a `GuestResponse`, with backpressure: the guest is read only
/// as fast as the caller iterates.
package struct GuestResponseBody: AsyncSequence, Sendable {
    package typealias Element = [UInt8]
    let events: AsyncThrowingChannel<[UInt8], any Error>

    package struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingChannel<[UInt8], any Error>.AsyncIterator
        package mutating func next() async throws -> [UInt8]? {
            do {
                return try await base.next()
            } catch let error as SecureExecError {
                throw error
            } catch {
                throw SecureExecError(.ioFailed, "reading the response failed: \(error)", step: "fetch")
            }
        }
    }

    package func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: events.makeAsyncIterator()) }
}

/// Keep-alive HTTP/1.1 connections to one sandbox's guest ports.
///
/// Each connection is a socket dialed inside the sandbox's network namespace,
/// adopted by NIO. After a response that allows keep-alive, the connection
/// waits idle for the next request to the same port, so a burst of fetches
/// pays one dial per concurrent request, not per request. At most
/// `maxConnectionsPerPort` are open per port; further requests queue.
package final class GuestConnectionPool: Sendable {
    package static let maxConnectionsPerPort = 64
    private static let maxIdlePerPort = 16

    /// What a caller of `checkOut` is given: a kept-alive connection, a slot
    /// to dial a new one in, or nothing (the pool is shut down).
    private enum Grant {
        case connection(GuestConnection)
        case dial
        case closed
    }

    private struct PortState {
        var idle: [GuestConnection] = []
        /// Connections counted against the limit: idle, in use, or being dialed.
        var open = 0
        var waiting: [CheckedContinuation<Grant, Never>] = []
    }

    private struct State {
        var ports: [Int: PortState] = [:]
        var closed = false
    }

    private let dialer: NetnsDialer
    private let group: any EventLoopGroup
    /// One lock for every decision: whether to wait and the enqueueing happen
    /// under it together, so a connection returned or a shutdown in between
    /// can never leave a waiter unresumed.
    private let state = Mutex(State())

    package init(dialer: NetnsDialer, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.dialer = dialer
        self.group = group
    }

    /// Sends one request and hands the response, as it arrives, to `handle`.
    ///
    /// The connection is returned to the pool once the response ended and
    /// `handle` returned; if `handle` returns early (the body not fully
    /// read), throws, or the deadline passes, the connection is closed.
    package func exchange<Result: Sendable>(
        port: Int, method: String, path: String, headers: [(String, String)], body: GuestRequestBody,
        connectTimeout: Duration, timeout: Duration?,
        _ handle: (GuestResponse) async throws -> Result
    ) async throws -> Result {
        let head = try Self.makeHead(method: method, path: path, headers: headers, body: body, port: port)
        let deadline = timeout.map { ContinuousClock.now.advanced(by: $0) }
        var attempt = 0
        while true {
            attempt += 1
            let connection = try await checkOut(port: port, connectTimeout: connectTimeout)
            let job = GuestExchange(head: head, body: body, reused: connection.hasServed)
            let watchdog = deadline.map { deadline in
                Task {
                    try? await Task.sleep(until: deadline)
                    if !Task.isCancelled {
                        job.abort(SecureExecError(.timeout, "the guest did not answer within \(timeout!)", step: "fetch"))
                        connection.close()
                    }
                }
            }
            defer { watchdog?.cancel() }
            connection.submit(job) { [weak self] reusable in self?.checkIn(connection, port: port, reusable: reusable) }
            do {
                let response = try await withTaskCancellationHandler {
                    try await job.response()
                } onCancel: {
                    job.abort(SecureExecError(.cancelled, "the fetch was cancelled", step: "fetch"))
                    connection.close()
                }
                let result: Result
                do {
                    result = try await withTaskCancellationHandler {
                        try await handle(response)
                    } onCancel: {
                        job.abort(SecureExecError(.cancelled, "the fetch was cancelled", step: "fetch"))
                        connection.close()
                    }
                } catch {
                    job.abandon(connection)
                    throw error
                }
                if !job.isComplete { job.abandon(connection) }
                return result
            } catch let error as SecureExecError where error.step == GuestExchange.staleStep {
                // A kept-alive connection the guest had already closed: try a new one once.
                guard attempt == 1, body.isReplayable else {
                    throw SecureExecError(.protocolError, "the guest closed the connection before answering", step: "fetch")
                }
                continue
            }
        }
    }

    /// Closes every idle connection and refuses new requests; waiters get `.disposed`.
    package func shutdown() {
        let (idle, waiting) = state.withLock { state in
            state.closed = true
            let idle = state.ports.values.flatMap(\.idle)
            let waiting = state.ports.values.flatMap(\.waiting)
            state.ports = [:]
            return (idle, waiting)
        }
        idle.forEach { $0.close() }
        waiting.forEach { $0.resume(returning: .closed) }
    }

    private func checkOut(port: Int, connectTimeout: Duration) async throws -> GuestConnection {
        let grant: Grant = await withCheckedContinuation { continuation in
            let now: Grant? = state.withLock { state in
                if state.closed { return .closed }
                var ports = state.ports[port, default: PortState()]
                defer { state.ports[port] = ports }
                while let connection = ports.idle.popLast() {
                    if connection.isAlive { return .connection(connection) }
                    ports.open -= 1
                }
                if ports.open < Self.maxConnectionsPerPort {
                    ports.open += 1
                    return .dial
                }
                ports.waiting.append(continuation)  // resumed by checkIn, release or shutdown
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
        switch grant {
        case .connection(let connection):
            return connection
        case .closed:
            throw SecureExecError(.disposed, "the runtime has been disposed", step: "fetch")
        case .dial:
            if state.withLock({ $0.closed }) {
                throw SecureExecError(.disposed, "the runtime has been disposed", step: "fetch")
            }
            do {
                let fd = try await dialer.connectLoopback(port: port, timeout: connectTimeout)
                return try await GuestConnection.adopt(fd: fd, group: group)
            } catch {
                release(port: port)
                throw error
            }
        }
    }

    private func checkIn(_ connection: GuestConnection, port: Int, reusable: Bool) {
        let (waiter, grant, close): (CheckedContinuation<Grant, Never>?, Grant, Bool) = state.withLock { state in
            if state.closed { return (nil, .closed, true) }  // shutdown already let every waiter go
            var ports = state.ports[port, default: PortState()]
            defer { state.ports[port] = ports }
            if reusable {
                if !ports.waiting.isEmpty { return (ports.waiting.removeFirst(), .connection(connection), false) }
                if ports.idle.count < Self.maxIdlePerPort {
                    ports.idle.append(connection)
                    return (nil, .dial, false)
                }
            }
            // Closed: its slot goes to the first waiter (to dial), else back to the pool.
            if !ports.waiting.isEmpty { return (ports.waiting.removeFirst(), .dial, true) }
            ports.open -= 1
            return (nil, .dial, true)
        }
        if close { connection.close() }
        waiter?.resume(returning: grant)
    }

    /// A dial that failed gives its slot to the first waiter, else back to the pool.
    private func release(port: Int) {
        let waiter = state.withLock { state -> CheckedContinuation<Grant, Never>? in
            if state.closed { return nil }
            var ports = state.ports[port, default: PortState()]
            defer { state.ports[port] = ports }
            if !ports.waiting.isEmpty { return ports.waiting.removeFirst() }
            ports.open -= 1
            return nil
        }
        waiter?.resume(returning: .dial)
    }

    static func makeHead(method: String, path: String, headers: [(String, String)], body: GuestRequestBody, port: Int)
        throws(SecureExecError) -> HTTPRequestHead
    {
        try HTTPRequestSpec(method: method, path: path, headers: headers).validate()
        // Framing is ours: the caller's content-length, transfer-encoding and connection are replaced.
        let owned: Set<String> = ["content-length", "transfer-encoding", "connection"]
        var fields = HTTPHeaders(headers.filter { !owned.contains($0.0.lowercased()) })
        // Dev servers often check Host against "localhost" (vite, webpack); it names the guest's loopback.
        if !fields.contains(name: "host") { fields.add(name: "host", value: "localhost:\(port)") }
        let httpMethod = HTTPMethod(rawValue: method)
        switch body {
        case .none:
            if httpMethod == .POST || httpMethod == .PUT || httpMethod == .PATCH {
                fields.add(name: "content-length", value: "0")
            }
        case .bytes(let bytes):
            fields.add(name: "content-length", value: String(bytes.count))
        case .stream:
            fields.add(name: "transfer-encoding", value: "chunked")
        }
        return HTTPRequestHead(version: .http1_1, method: httpMethod, uri: path, headers: fields)
    }
}

/// One request/response on a connection, handed between the caller and the
/// connection's task.
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
                try await produce { chunk in
                    if !chunk.isEmpty { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: chunk)))) }
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
            if !exchange.isAborted {
                if !sawHead && exchange.reused {
                    exchange.abort(SecureExecError(.protocolError, "\(error)", step: GuestExchange.staleStep))
                } else {
                    exchange.abort(Self.map(error))
                }
            }
            return (false, false)
        }
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

extension NetnsDialer {
    /// 127.0.0.1 first, then [::1] when IPv4 is refused (a guest may listen on IPv6 only).
    package func connectLoopback(port: Int, timeout: Duration) async throws(SecureExecError) -> Int32 {
        do {
            return try await connect(host: "127.0.0.1", port: port, timeout: timeout)
        } catch where error.errno == ECONNREFUSED {
            return try await connect(host: "::1", port: port, timeout: timeout)
        }
    }
}
