
#if canImport(Glibc)
import Glibc
#endif

/// A response whose body arrives as a stream, for `NodeRuntime.fetchStreaming`.
public struct StreamingResponse: Sendable {
    public var status: Int
    public var reason: String
    public var headers: [HTTPHeader]
    /// The body's chunks in order, as the guest sends them. Reading is what
    /// pulls more from the guest, so memory stays bounded however large it is.
    public var body: ResponseBody

    /// The first value of header `name` (case-insensitive), or nil.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// The chunks of a streamed response body. Throws `SecureExecError` if the
/// connection breaks before the body's end.
public struct ResponseBody: AsyncSequence, Sendable {
    public typealias Element = [UInt8]
    let base: GuestResponseBody

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: GuestResponseBody.AsyncIterator
        public mutating func next() async throws -> [UInt8]? { try await base.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator()) }
}

extension NodeRuntime {
    /// Sends one HTTP/1.1 request to a guest server on `port` through the
    /// kernel (no host port is bound) and returns the whole response.
    ///
    /// Connects to 127.0.0.1, or [::1] when IPv4 is refused. Connections are
    /// kept alive and reused per port. Method, path and headers are validated
    /// before anything is sent; `host` defaults to `localhost:<port>`.
    /// - Parameters:
    ///   - connectTimeout: for reaching the guest's port.
    ///   - timeout: for the whole exchange, connect included.
    ///   - maxBodyBytes: a larger body fails with `.responseTooLarge`.
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
    /// If it throws, the error is its own (a `SecureExecError` as thrown, any
    /// other as `underlyingError` of an `.ioFailed`) and the connection is closed.
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
    public func fetchStreaming<Result: Sendable>(
        _ port: Int, path: String = "/", method: String = "GET", headers: [HTTPHeader] = [], body: [UInt8]? = nil,
        connectTimeout: Duration = .seconds(10), timeout: Duration? = nil,
        _ handle: (StreamingResponse) async throws -> Result
    ) async throws -> Result {
        try await exchange(
            port: port, path: path, method: method, headers: headers, body: body.map { .bytes($0) } ?? .none,
            connectTimeout: connectTimeout, timeout: timeout
        ) { response in
            try await handle(
                StreamingResponse(
                    status: response.status, reason: response.reason,
                    headers: response.headers.map { HTTPHeader($0.0, $0.1) }, body: ResponseBody(base: response.body)))
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

    private func exchange<Result: Sendable>(
        port: Int, path: String, method: String, headers: [HTTPHeader], body: GuestRequestBody,
        connectTimeout: Duration, timeout: Duration?, _ handle: (GuestResponse) async throws -> Result
    ) async throws -> Result {
        try Self.validate(port: port)
        try Self.validate(timeout: connectTimeout, name: "connectTimeout")
        if let timeout { try Self.validate(timeout: timeout, name: "timeout") }
        guard !sandbox.isDisposed else { throw SecureExecError(.disposed, "the runtime has been disposed", step: "fetch") }
        return try await sandbox.http.exchange(
            port: port, method: method, path: path, headers: headers.map { ($0.name, $0.value) }, body: body,
            connectTimeout: min(connectTimeout, timeout ?? connectTimeout), timeout: timeout, handle)
    }

    static func streamBody<Chunks: AsyncSequence & Sendable>(_ chunks: Chunks) -> GuestRequestBody
    where Chunks.Element == [UInt8] {
        .stream { write in
            for try await chunk in chunks { try await write(chunk) }
        }
    }
}
