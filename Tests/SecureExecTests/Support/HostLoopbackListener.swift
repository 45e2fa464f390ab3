#if canImport(Glibc)
import Glibc
#endif

/// A TCP socket listening on the host's 127.0.0.1 at a kernel-chosen port.
///
/// Nothing accepts while the test runs: the kernel completes handshakes into
/// the backlog by itself, so `drainConnections()` afterwards counts every
/// connection anyone made, even one that was closed at once. Always `close()`
/// it (use `defer`).
final class HostLoopbackListener {
    private var fd: Int32
    let port: Int

    init() throws {
        // Non-blocking, so draining the backlog stops at EAGAIN instead of waiting.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw HostSocketError(step: "socket", errno: errno) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bind(fd, address, length) == 0 && listen(fd, 64) == 0 && getsockname(fd, address, &length) == 0
            }
        }
        guard bound else {
            let error = errno
            Glibc.close(fd)
            throw HostSocketError(step: "bind/listen", errno: error)
        }
        self.fd = fd
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// Accepts, without blocking, every connection waiting in the backlog, closes each and returns how many there were.
    func drainConnections() -> Int {
        var count = 0
        while true {
            let connection = accept(fd, nil, nil)
            if connection < 0 {
                if errno == EINTR { continue }
                return count
            }
            Glibc.close(connection)
            count += 1
        }
    }

    /// Connects to the listener from the host and closes at once; throws if the connection fails.
    func connectFromHost() throws {
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard client >= 0 else { throw HostSocketError(step: "socket", errno: errno) }
        defer { Glibc.close(client) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard connected else { throw HostSocketError(step: "connect", errno: errno) }
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    deinit { close() }
}

struct HostSocketError: Error {
    let step: String
    let errno: Int32
}
