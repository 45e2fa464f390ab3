import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A response whose body arrives as a stream, for `NodeRuntime.fetchStreaming`.
///
/// Valid only inside the `fetchStreaming` handler: once the handler returns,
/// the connection is released and `body` yields nothing more.
public struct StreamingResponse: Sendable {
    /// The status code, e.g. 200.
    public var status: Int
    /// The reason phrase the guest sent, e.g. "OK" (may be empty).
    public var reason: String
    /// The header fields in the order sent, repeated names kept.
    public var headers: [HTTPHeader]
    /// The body's chunks in order, as the guest sends them. Reading is what
    /// pulls more from the guest, so memory stays bounded however large it is.
    public var body: ResponseBody

    /// The first value of header `name` (case-insensitive), or nil.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// Every value of header `name` (case-insensitive), in order; empty when absent.
    public func headerValues(_ name: String) -> [String] {
        headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
    }
}

/// The chunks of a streamed response body. Throws `SecureExecError` if the
/// connection breaks before the body's end.
///
/// Iterate it once, inside the `fetchStreaming` handler; cancelling the
/// iterating task closes the connection.
public struct ResponseBody: AsyncSequence, Sendable {
    /// One chunk of body bytes, as it came off the connection.
    public typealias Element = [UInt8]
    let base: GuestResponseBody

    /// Pulls the body's chunks one at a time.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: GuestResponseBody.AsyncIterator
        /// The next chunk, or nil at the body's end.
        ///
        /// - Throws: `SecureExecError`, e.g. `.protocolError` when the guest closed
        ///   mid-body or sent malformed HTTP, `.timeout` past the fetch's timeout.
        ///   Reading after the `fetchStreaming` handler returned is
        ///   `.invalidArgument`: the connection is gone by then.
        public mutating func next() async throws -> [UInt8]? {
            guard scope.isOpen else {
                throw SecureExecError(
                    .invalidArgument, "a streamed body must be read inside the fetchStreaming handler", step: "fetch")
            }
            return try await base.next()
        }

        let scope: HandlerScope
    }

    let scope: HandlerScope

    /// An iterator over the chunks; make one per body.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator(), scope: scope) }
}

extension NodeRuntime {
    /// Sends one HTTP/1.1 request to a guest server on `port` through the
    /// kernel (no host port is bound) and returns the whole response.
    ///
    /// Connects to 127.0.0.1, or [::1] when IPv4 is refused. Connections are
    /// kept alive and reused per port. Method, path and headers are validated
    /// before anything is sent; `host` defaults to `localhost:<port>`.
    /// SecureExec sets `content-length`, `transfer-encoding` and `connection`
    /// itself (the caller's are replaced). A kept-alive connection the guest
    /// closed meanwhile is retried once on a fresh one when the request can
    /// be sent again. Cancelling the task
    /// closes the connection and throws `.cancelled`.
    /// - Parameters:
    ///   - port: the guest's port, 1-65535.
    ///   - path: the request target, starting with `/` (a query may follow).
    ///   - method: an HTTP method token; default `GET`.
    ///   - headers: sent in order; names must be tokens, values free of
    ///     control characters.
    ///   - body: the request body, sent with its `content-length`; nil: none.
    ///   - connectTimeout: for reaching the guest's port.
    ///   - timeout: for the whole exchange, connect included.
    ///   - maxBodyBytes: a larger body fails with `.responseTooLarge`.
    ///     Default 64 MiB; negative is `.invalidArgument`.
    /// - Throws: `.invalidArgument`, `.connectionFailed`, `.timeout`,
    ///   `.protocolError`, `.responseTooLarge`, `.cancelled`, `.disposed`.
    public func fetch(
        _ port: Int, path: String = "/", method: String = "GET", headers: [HTTPHeader] = [], body: [UInt8]? = nil,
        connectTimeout: Duration = .seconds(10), timeout: Duration = .seconds(30), maxBodyBytes: Int = 64 << 20
    ) async throws(SecureExecError) -> FetchResponse {
        try await collect(
            port: port, path: path, method: method, headers: headers, body: body.map { .bytes($0) } ?? .none,
            connectTimeout: connectTimeout, timeout: timeout, maxBodyBytes: maxBodyBytes)
    }

    /// Sends a UTF-8 text body; see `fetch(_:path:method:headers:body:connectTimeout:timeout:maxBodyBytes:)`.
    ///
    /// - Throws: as that `fetch`.
    public func fetch(
        _ port: Int, path: String = "/", method: String, headers: [HTTPHeader] = [], body: String,
        connectTimeout: Duration = .seconds(10), timeout: Duration = .seconds(30), maxBodyBytes: Int = 64 << 20
    ) async throws(SecureExecError) -> FetchResponse {
        try await fetch(
            port, path: path, method: method, headers: headers, body: Array(body.utf8), connectTimeout: connectTimeout,
            timeout: timeout, maxBodyBytes: maxBodyBytes)
    }

    /// Sends a body produced as it goes (an upload of any size), with chunked
    /// transfer-encoding; the sequence is read only as fast as the guest takes it.
    ///
    /// The overall `timeout` defaults to 300 s, for large uploads; otherwise as
    /// `fetch(_:path:method:headers:body:connectTimeout:timeout:maxBodyBytes:)`.
    /// If the sequence throws, the error is its own (a `SecureExecError` as
    /// thrown, any other as `underlyingError` of an `.ioFailed`) and the
    /// connection is closed.
    /// - Throws: as that `fetch`, or the sequence's error as above.
    public func fetch<Chunks: AsyncSequence & Sendable>(
        _ port: Int, path: String = "/", method: String, headers: [HTTPHeader] = [], bodyStream: Chunks,
        connectTimeout: Duration = .seconds(10), timeout: Duration = .seconds(300), maxBodyBytes: Int = 64 << 20
    ) async throws(SecureExecError) -> FetchResponse where Chunks.Element == [UInt8] {
        try await collect(
            port: port, path: path, method: method, headers: headers, body: Self.streamBody(bodyStream),
            connectTimeout: connectTimeout, timeout: timeout, maxBodyBytes: maxBodyBytes)
    }

    /// Sends a request and hands `handle` the response as soon as its head
    /// arrives, with the body as a stream of chunks (server-sent events,
    /// large downloads). The connection is released when `handle` returns; if
    /// it returns before the body's end, the connection is closed.
    ///
    /// `timeout` bounds the whole exchange including `handle` (nil: no bound,
    /// e.g. for an event stream); `bodyStream`, if given, is sent chunked.
    ///
    /// `handle` runs on the caller's actor (`isolation`), so it may touch the
    /// caller's state and return a non-`Sendable` value.
    /// - Throws: `SecureExecError` as `fetch` does before the head arrives (no
    ///   `.responseTooLarge`: nothing is collected), or whatever `handle` throws.
    public func fetchStreaming<Result>(
        _ port: Int, path: String = "/", method: String = "GET", headers: [HTTPHeader] = [], body: [UInt8]? = nil,
        connectTimeout: Duration = .seconds(10), timeout: Duration? = nil,
        isolation: isolated (any Actor)? = #isolation,
        _ handle: (StreamingResponse) async throws -> Result
    ) async throws -> Result {
        try await exchange(
            port: port, path: path, method: method, headers: headers, body: body.map { .bytes($0) } ?? .none,
            connectTimeout: connectTimeout, timeout: timeout, isolation: isolation
        ) { response in
            let scope = HandlerScope()
            defer { scope.close() }
            return try await handle(
                StreamingResponse(
                    status: response.status, reason: response.reason,
                    headers: response.headers.map { HTTPHeader($0.0, $0.1) },
                    body: ResponseBody(base: response.body, scope: scope)))
        }
    }

    private func collect(
        port: Int, path: String, method: String, headers: [HTTPHeader], body: GuestRequestBody,
        connectTimeout: Duration, timeout: Duration, maxBodyBytes: Int
    ) async throws(SecureExecError) -> FetchResponse {
        // Here, so that every collecting overload (the streamed upload's too) checks it.
        guard maxBodyBytes >= 0 else {
            throw SecureExecError(.invalidArgument, "maxBodyBytes must not be negative, got \(maxBodyBytes)", step: "fetch")
        }
        do {
            return try await exchange(
                port: port, path: path, method: method, headers: headers, body: body, connectTimeout: connectTimeout,
                timeout: timeout
            ) { response in
                var collected: [UInt8] = []
                // The announced length, up to the cap, at once; without one the array grows geometrically.
                if let length = response.headers.first(where: { $0.0.lowercased() == "content-length" }).flatMap({ Int($0.1) }) {
                    collected.reserveCapacity(max(0, min(length, maxBodyBytes)))
                }
                for try await chunk in response.body {
                    guard collected.count + chunk.count <= maxBodyBytes else {
                        throw SecureExecError(
                            .responseTooLarge, "the response body is larger than maxBodyBytes (\(maxBodyBytes))",
                            step: "fetch")
                    }
                    collected.append(contentsOf: chunk)
                }
                return FetchResponse(
                    status: response.status, reason: response.reason,
                    headers: response.headers.map { HTTPHeader($0.0, $0.1) }, body: collected)
            }
        } catch let error as SecureExecError {
            throw error
        } catch {
            throw SecureExecError(.ioFailed, "fetch failed: \(error)", step: "fetch")
        }
    }

    private func exchange<Result>(
        port: Int, path: String, method: String, headers: [HTTPHeader], body: GuestRequestBody,
        connectTimeout: Duration, timeout: Duration?, isolation: isolated (any Actor)? = #isolation,
        _ handle: (GuestResponse) async throws -> Result
    ) async throws -> Result {
        try Self.validate(port: port)
        try Self.validate(timeout: connectTimeout, name: "connectTimeout")
        if let timeout { try Self.validate(timeout: timeout, name: "timeout") }
        guard !sandbox.isDisposed else { throw SecureExecError(.disposed, "the runtime has been disposed", step: "fetch") }
        do {
            return try await sandbox.http.exchange(
                port: port, method: method, path: path, headers: headers.map { ($0.name, $0.value) }, body: body,
                connectTimeout: min(connectTimeout, timeout ?? connectTimeout), timeout: timeout, isolation: isolation,
                handle)
        } catch let error as SecureExecError
            where sandbox.isDisposed && [.protocolError, .ioFailed, .connectionFailed].contains(error.code)
        {
            // The connection broke because dispose closed it, not the guest.
            throw SecureExecError(.disposed, "the runtime was disposed during the fetch", step: "fetch")
        }
    }

    static func streamBody<Chunks: AsyncSequence & Sendable>(_ chunks: Chunks) -> GuestRequestBody
    where Chunks.Element == [UInt8] {
        .stream { write in
            for try await chunk in chunks { try await write(chunk) }
        }
    }
}

/// Whether a `fetchStreaming` handler still runs (its body may be read).
final class HandlerScope: Sendable {
    private let open = Atomic<Bool>(true)
    var isOpen: Bool { open.load(ordering: .acquiring) }
    func close() { open.store(false, ordering: .releasing) }
}
