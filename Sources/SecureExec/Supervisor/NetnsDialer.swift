import CNamespaces
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Opens TCP connections to a guest's loopback from the host, through the
/// kernel, without binding any host port.
///
/// The socket is made inside the sandbox's network namespace by a pthread that
/// exists only for that call (see `se_netns_connect`); no Swift or Dispatch
/// thread ever changes namespace. The socket stays in the sandbox's namespace
/// for life, so the rest of the host uses it like any other socket.
package struct NetnsDialer: Sendable {
    let netnsFD: Int32

    /// Connects to `host` (an IPv4 or IPv6 literal) and `port` in the sandbox.
    /// Returns a connected, non-blocking, close-on-exec socket the caller owns.
    package func connect(host: String, port: Int, timeout: Duration) async throws(SecureExecError) -> Int32 {
        guard let address = IPAddress(host) else {
            throw SecureExecError(.invalidArgument, "\(host) is not an IP address", step: "dial")
        }
        var storage = sockaddr_storage()
        let length = address.socketAddress(port: port, into: &storage)

        var inProgress: Int32 = 0
        var step: UnsafePointer<CChar>? = nil
        let fd = withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                se_netns_connect(netnsFD, $0, length, &inProgress, &step)
            }
        }
        if fd < 0 {
            let error = errno
            let where_ = step.map { String(cString: $0) } ?? "connect"
            let code: SecureExecError.Code = where_ == "connect" ? .connectionFailed : .ioFailed
            throw SystemCall.failure(code, "could not connect to \(host):\(port) in the sandbox", step: where_, errno: error)
        }
        if inProgress != 0 {
            do {
                try await Self.awaitWritable(fd, timeout: timeout)
            } catch {
                SystemCall.close(fd)
                throw error
            }
            let error = se_socket_error(fd)
            if error != 0 {
                SystemCall.close(fd)
                throw SystemCall.failure(
                    .connectionFailed, "could not connect to \(host):\(port) in the sandbox", step: "connect",
                    errno: error)
            }
        }
        return fd
    }

    /// Waits for a non-blocking connect to finish (the socket turns
    /// writable), up to `timeout`; gives up early when the task is cancelled.
    /// `poll` in short slices on a Dispatch thread rather than a Dispatch
    /// write source, whose cancellation can race libdispatch's delivery of a
    /// hang-up (a refused connect is one) (ARCHITECTURE.md, "Concurrency model").
    private static func awaitWritable(_ fd: Int32, timeout: Duration) async throws(SecureExecError) {
        let deadline = timeout.deadlineFromNow
        while true {
            let ready = try await Blocking.run { () throws(SecureExecError) -> Bool in
                var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                return poll(&entry, 1, 50) > 0
            }
            if ready { return }
            if ContinuousClock.now >= deadline {
                throw SecureExecError(.timeout, "connecting to the guest took longer than \(timeout)", step: "connect")
            }
            if Task.isCancelled {
                throw SecureExecError(.cancelled, "connecting to the guest was cancelled", step: "connect")
            }
        }
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
