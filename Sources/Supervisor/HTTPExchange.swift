import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// One HTTP/1.1 request to send to a guest.
public struct HTTPRequestSpec: Sendable {
    public var method: String
    /// Origin-form request target; must start with "/".
    public var path: String
    public var headers: [(String, String)]
    public var body: [UInt8]?

    public init(method: String = "GET", path: String = "/", headers: [(String, String)] = [], body: [UInt8]? = nil) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
    }

    /// Throws `.invalidArgument` when the request could not be sent as written: the method is not an
    /// RFC 9110 token; the path is empty, does not start with "/", or holds a space or control character;
    /// a header name is not a token; a header value holds a control character other than HTAB (CR, LF and
    /// NUL would allow header injection; NIO's outbound validator rejects the other controls too, so we
    /// reject them here rather than fail half-way through the write).
    public func validate() throws(SecureExecError) {
        guard isToken(method) else {
            throw SecureExecError(.invalidArgument, "HTTP method \(String(reflecting: method)) is not a token")
        }
        guard path.hasPrefix("/"), !path.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) else {
            throw SecureExecError(
                .invalidArgument, "HTTP path \(String(reflecting: path)) must start with \"/\" and hold no spaces or control characters")
        }
        for (name, value) in headers {
            guard isToken(name) else {
                throw SecureExecError(.invalidArgument, "HTTP header name \(String(reflecting: name)) is not a token")
            }
            guard isFieldValue(value) else {
                throw SecureExecError(.invalidArgument, "value of HTTP header \(name) holds a control character")
            }
        }
    }
}

/// One complete HTTP response.
public struct HTTPResponseParts: Sendable {
    public var status: Int
    /// NIO's decoder does not keep the reason phrase the server sent; this is the standard phrase for
    /// `status` (empty for codes NIO does not know).
    public var reason: String
    /// In wire order, repeated names (e.g. set-cookie) kept as separate entries.
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, reason: String, headers: [(String, String)], body: [UInt8]) {
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
    }
}

/// RFC 9110 `token`: 1*tchar.
private func isToken(_ text: String) -> Bool {
    !text.isEmpty && text.utf8.allSatisfy { byte in
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}

/// A field value may hold anything but control characters (HTAB excepted).
private func isFieldValue(_ text: String) -> Bool {
    text.utf8.allSatisfy { $0 == UInt8(ascii: "\t") || ($0 >= 0x20 && $0 != 0x7F) }
}

enum HTTPExchange {
    /// Adopts `fd` (a connected stream socket; closed when this returns or throws, on every path), sends
    /// `request` and returns the whole response. Adds `Host: hostHeader` unless the request has a Host header,
    /// and always sets its own `content-length` (when there is a body, or 0 for POST/PUT/PATCH) and
    /// `connection: close`, replacing any the caller gave, so the framing on the wire is always right.
    ///
    /// Throws `.invalidArgument` (bad request, host header, fd, timeout or cap), `.timeout` after `timeout`,
    /// `.cancelled` on task cancellation, `.protocolError` for malformed HTTP or a peer that closes
    /// mid-response, `.responseTooLarge` for a body over `maxBodyBytes`, `.ioFailed` for socket errors.
    static func perform(
        fd: Int32, request: HTTPRequestSpec, hostHeader: String, timeout: Duration,
        maxBodyBytes: Int, group: any EventLoopGroup
    ) async throws(SecureExecError) -> HTTPResponseParts {
        // One loop for the channel, the promise and the timer: every completion and callback runs on it.
        let loop = group.next()
        // Until NIO has adopted the fd, every exit must close it here, exactly once.
        let head: HTTPRequestHead
        let bootstrap: ClientBootstrap
        do throws(SecureExecError) {
            guard fd >= 0 else { throw SecureExecError(.invalidArgument, "socket fd \(fd) is negative") }
            head = try makeHead(request, hostHeader: hostHeader)
            guard timeout >= .zero, maxBodyBytes >= 0 else {
                throw SecureExecError(.invalidArgument, "timeout and maxBodyBytes must not be negative")
            }
            guard let validated = ClientBootstrap(validatingGroup: loop) else {
                throw SecureExecError(.invalidArgument, "the event loop group cannot adopt POSIX sockets")
            }
            bootstrap = validated
            try prepareSocket(fd)
            if Task.isCancelled { throw SecureExecError(.cancelled, "HTTP request cancelled before it was sent") }
        } catch {
            close(fd)
            throw error
        }

        // Completed exactly once by whoever gets there first: the handler, the timer, cancellation, or a
        // failed adoption. Later completions are ignored by NIO, so no extra bookkeeping is needed.
        let promise = loop.makePromise(of: HTTPResponseParts.self)
        let timer = loop.scheduleTask(in: TimeAmount(timeout)) {
            promise.fail(SecureExecError(.timeout, "no complete HTTP response within \(timeout)"))
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }

        let body = request.body ?? []
        // From this call on NIO owns the fd: the only failure that leaves it open is in SocketChannel's init
        // (setting O_NONBLOCK), which prepareSocket already did; every later failure closes the channel.
        let adopted = bootstrap.channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                try channel.pipeline.syncOperations.addHandler(
                    ExchangeHandler(head: head, body: body, maxBodyBytes: maxBodyBytes, promise: promise))
            }
        }.withConnectedSocket(fd)
        adopted.whenComplete { result in
            switch result {
            case .success(let channel):
                // However the exchange ends (success, error, timeout, cancel), the connection is closed.
                promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
            case .failure(let error):
                promise.fail(SecureExecError(.ioFailed, "adopting the socket failed: \(error)", step: "adopt socket"))
            }
        }

        let outcome: Result<HTTPResponseParts, any Error>
        do {
            outcome = .success(
                try await withTaskCancellationHandler {
                    try await promise.futureResult.get()
                } onCancel: {
                    promise.fail(SecureExecError(.cancelled, "HTTP request cancelled"))
                })
        } catch {
            outcome = .failure(error)
        }
        // Only return once the fd is really closed, so the caller's "closed on return" holds.
        _ = try? await adopted.flatMap { $0.closeFuture }.get()
        switch outcome {
        case .success(let parts): return parts
        case .failure(let error as SecureExecError): throw error
        case .failure(let error): throw SecureExecError(.ioFailed, "HTTP exchange failed: \(error)")
        }
    }

    /// Validates everything and builds the head with the framing headers this exchange owns.
    private static func makeHead(_ request: HTTPRequestSpec, hostHeader: String) throws(SecureExecError) -> HTTPRequestHead {
        try request.validate()
        guard isFieldValue(hostHeader) else {
            throw SecureExecError(.invalidArgument, "host header \(String(reflecting: hostHeader)) holds a control character")
        }
        let owned: Set<String> = ["content-length", "transfer-encoding", "connection"]
        var headers = HTTPHeaders(request.headers.filter { !owned.contains($0.0.lowercased()) })
        if !headers.contains(name: "host") { headers.add(name: "Host", value: hostHeader) }
        let method = HTTPMethod(rawValue: request.method)
        if let body = request.body {
            headers.add(name: "content-length", value: String(body.count))
        } else if method == .POST || method == .PUT || method == .PATCH {
            // Otherwise NIO's encoder would switch these methods to chunked encoding.
            headers.add(name: "content-length", value: "0")
        }
        headers.add(name: "connection", value: "close")
        return HTTPRequestHead(version: .http1_1, method: method, uri: request.path, headers: headers)
    }

    /// Checks that `fd` is a stream socket and makes it non-blocking ourselves, so NIO's adoption cannot
    /// fail half-way and leave us unsure who owns the fd.
    private static func prepareSocket(_ fd: Int32) throws(SecureExecError) {
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 else {
            throw SecureExecError(.invalidArgument, "fd \(fd) is not a socket", step: "getsockopt", errno: errno)
        }
        guard type == Int32(SOCK_STREAM.rawValue) else {
            throw SecureExecError(.invalidArgument, "fd \(fd) is not a stream socket")
        }
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else {
            throw SecureExecError(.ioFailed, "could not make fd \(fd) non-blocking", step: "fcntl", errno: errno)
        }
    }
}

/// Sends the request once the channel is active and collects the response. Lives on the channel's event
/// loop only, so it needs no locking; it talks to the outside world solely through the (Sendable) promise.
private final class ExchangeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let head: HTTPRequestHead
    private let body: [UInt8]
    private let maxBodyBytes: Int
    private let promise: EventLoopPromise<HTTPResponseParts>
    private var responseHead: HTTPResponseHead?
    private var responseBody: [UInt8] = []
    private var finished = false

    init(head: HTTPRequestHead, body: [UInt8], maxBodyBytes: Int, promise: EventLoopPromise<HTTPResponseParts>) {
        self.head = head
        self.body = body
        self.maxBodyBytes = maxBodyBytes
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        // The bootstrap adds us before registering, so an adopted, connected socket always fires this.
        // Write failures need no callback: NIO closes the channel on them, and channelInactive reports it.
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !body.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !finished else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            responseHead = head
        case .body(let chunk):
            guard responseBody.count + chunk.readableBytes <= maxBodyBytes else {
                return fail(context, SecureExecError(.responseTooLarge, "response body exceeds \(maxBodyBytes) bytes"))
            }
            responseBody.append(contentsOf: chunk.readableBytesView)
        case .end:
            guard let head = responseHead else {
                return fail(context, SecureExecError(.protocolError, "response ended without a head"))
            }
            finished = true
            promise.succeed(
                HTTPResponseParts(
                    status: Int(head.status.code), reason: head.status.reasonPhrase,
                    headers: head.headers.map { ($0.name, $0.value) }, body: responseBody))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The decoder runs before us and has already turned a read-until-close body's EOF into `.end`.
        fail(context, SecureExecError(.protocolError, "connection closed before the response was complete"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Last handler in the pipeline: handle, don't forward (the tail would only log it).
        fail(context, Self.map(error))
    }

    private func fail(_ context: ChannelHandlerContext, _ error: SecureExecError) {
        guard !finished else { return }
        finished = true
        promise.fail(error)
        context.close(promise: nil)
    }

    private static func map(_ error: any Error) -> SecureExecError {
        switch error {
        case HTTPParserError.invalidEOFState:
            return SecureExecError(.protocolError, "connection closed before the response was complete")
        case let error as HTTPParserError:
            return SecureExecError(.protocolError, "malformed HTTP response: \(error)")
        case let error as IOError where error.errnoCode == ECONNRESET || error.errnoCode == EPIPE:
            return SecureExecError(.protocolError, "connection reset before the response was complete", errno: error.errnoCode)
        case let error as IOError:
            return SecureExecError(.ioFailed, "socket I/O failed: \(error)", errno: error.errnoCode)
        default:
            return SecureExecError(.ioFailed, "HTTP exchange failed: \(error)")
        }
    }
}
