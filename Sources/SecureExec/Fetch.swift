import Supervisor

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
        guard maxBodyBytes >= 0 else {
            throw SecureExecError(.invalidArgument, "maxBodyBytes must not be negative", step: "fetch")
        }
        return try await collect(
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
        do {
            return try await exchange(
                port: port, path: path, method: method, headers: headers, body: body, connectTimeout: connectTimeout,
                timeout: timeout
            ) { response in
                var collected: [UInt8] = []
                for try await chunk in response.body {
                    guard collected.count + chunk.count <= maxBodyBytes else {
                        throw SecureExecError(
                            .responseTooLarge, "the response body is larger than maxBodyBytes (\(maxBodyBytes))",
                            step: "fetch")
                    }
                    collected += chunk
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

/// A host listener piping every connection to a guest port; see `NodeRuntime.expose`.
public final class ExposedPort: Sendable {
    let exposure: PortExposure

    init(exposure: PortExposure) { self.exposure = exposure }

    /// The host address it listens on (e.g. "127.0.0.1").
    public var host: String { exposure.hostAddress }
    /// The host port it listens on (the kernel's choice when 0 was asked for).
    public var port: Int { exposure.hostPort }
    /// The guest port it pipes to.
    public var guestPort: Int { exposure.guestPort }
    /// `http://host:port/`, with IPv6 hosts in brackets.
    public var url: String { host.contains(":") ? "http://[\(host)]:\(port)/" : "http://\(host):\(port)/" }

    /// Stops listening and closes every connection piped through it. Idempotent.
    public func close() async { await exposure.close() }
}

extension NodeRuntime {
    /// True for "localhost" and for IP literals on loopback (127.0.0.0/8,
    /// ::1, ::ffff:127.x). Names are never looked up: a name that merely
    /// starts with "127." could resolve anywhere.
    static func isLoopbackLiteral(_ host: String) -> Bool {
        if host == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, host, &v6) == 1 else { return false }
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return true }
        return bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff && bytes[12] == 127
    }

    /// Opens a real TCP listener on the host and pipes each connection it
    /// accepts, both ways and untouched, to `guestPort` in the sandbox, so a
    /// browser, curl or a WebSocket client reaches the dev server as if it ran
    /// locally. Nothing is exposed unless asked.
    ///
    /// - Parameters:
    ///   - host: where to listen; loopback (127.0.0.1 or ::1) unless
    ///     `allowNonLoopback` is true, which must be an explicit choice.
    ///   - port: the host port, or 0 to let the kernel pick (read it from the result).
    /// - Throws: `.invalidArgument` (bad ports, a non-loopback host without the
    ///   opt-in), `.ioFailed` when binding fails (e.g. the port is taken).
    public func expose(
        _ guestPort: Int, host: String = "127.0.0.1", port: Int = 0, allowNonLoopback: Bool = false,
        connectTimeout: Duration = .seconds(10)
    ) async throws(SecureExecError) -> ExposedPort {
        try Self.validate(port: guestPort)
        guard (0...65535).contains(port) else {
            throw SecureExecError(.invalidArgument, "host port \(port) is out of range (0-65535)", step: "expose")
        }
        try Self.validate(timeout: connectTimeout, name: "connectTimeout")
        guard Self.isLoopbackLiteral(host) || allowNonLoopback else {
            throw SecureExecError(
                .invalidArgument,
                "\(host) is not a loopback address; pass allowNonLoopback: true to expose the guest beyond this machine",
                step: "expose")
        }
        guard !sandbox.isDisposed else { throw SecureExecError(.disposed, "the runtime has been disposed", step: "expose") }
        let exposure = try await PortExposure.open(
            host: host == "localhost" ? "127.0.0.1" : host, port: port, guestPort: guestPort, dialer: sandbox.dialer,
            connectTimeout: connectTimeout)
        sandbox.register(exposure)
        return ExposedPort(exposure: exposure)
    }
}
