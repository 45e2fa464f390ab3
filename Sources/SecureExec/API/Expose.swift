#if canImport(Glibc)
import Glibc
#endif

/// A host listener piping every connection to a guest port; see `NodeRuntime.expose`.
///
/// It lives until `close()` or the runtime's `dispose()`, whichever comes
/// first; dropping the object does not close it.
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
    ///   - guestPort: the port the guest's server listens on, 1-65535.
    ///   - host: where to listen; loopback (127.0.0.1 or ::1) unless
    ///     `allowNonLoopback` is true, which must be an explicit choice.
    ///   - port: the host port, or 0 to let the kernel pick (read it from the result).
    ///   - allowNonLoopback: true to listen on an address other machines reach.
    ///   - connectTimeout: for dialing the guest port, per accepted connection.
    /// - Throws: `.invalidArgument` (bad ports, a non-loopback host without the
    ///   opt-in), `.ioFailed` when binding fails (e.g. the port is taken).
    ///   `.disposed` after `dispose()`.
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
