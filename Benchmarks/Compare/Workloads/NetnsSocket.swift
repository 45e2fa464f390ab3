import CPhases
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// TCP connections to 127.0.0.1 in this host's loopback or in another
/// process's network namespace, made the way SecureExec dials its guests: a
/// dedicated thread `setns`es into the namespace, creates and connects the
/// socket there and exits; the socket stays in that namespace.
public enum LoopbackDialer {
    /// A connected, blocking TCP socket to 127.0.0.1:`port`, in the network
    /// namespace of `pid` (nil: this process's own). The caller owns it.
    public static func connect(port: Int, inNetworkNamespaceOf pid: pid_t? = nil) throws -> Int32 {
        guard let pid else { return try connectHere(port: port) }
        let namespace = open("/proc/\(pid)/ns/net", O_RDONLY | O_CLOEXEC)
        guard namespace >= 0 else { throw BenchmarkFailure("open /proc/\(pid)/ns/net: \(String(cString: strerror(errno)))") }
        defer { close(namespace) }
        let outcome = OutcomeBox()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            if cphases_enter_netns(namespace) != 0 {
                outcome.set(.failure(BenchmarkFailure("setns: \(String(cString: strerror(errno)))")))
            } else {
                outcome.set(Result { try connectHere(port: port) })
            }
            done.signal()
        }
        thread.start()
        done.wait()
        return try outcome.get()
    }

    private static func connectHere(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw BenchmarkFailure("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw BenchmarkFailure("connect to 127.0.0.1:\(port): \(message)")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    private final class OutcomeBox: @unchecked Sendable {
        private let lock = NSLock()
        private var outcome: Result<Int32, any Error>?
        func set(_ value: Result<Int32, any Error>) { lock.withLock { outcome = value } }
        func get() throws -> Int32 { try lock.withLock { outcome! }.get() }
    }
}

/// A minimal blocking HTTP/1.1 client on one kept-alive socket: the
/// cheapest possible client, so its round trip is the kernel's path plus
/// the server, and nothing else.
public final class RawHTTPClient {
    private let fd: Int32
    private var buffer: [UInt8] = []

    /// Takes ownership of a connected socket.
    public init(socket: Int32) { fd = socket }
    deinit { close(fd) }

    /// GET `path`; returns the status once the whole body arrived.
    public func get(_ path: String) throws -> Int {
        let request = Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)
        var sent = 0
        while sent < request.count {
            let count = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw BenchmarkFailure("send: \(String(cString: strerror(errno)))") }
            sent += count
        }
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headEnd: Int?
        while headEnd == nil {
            headEnd = buffer.firstRange(of: separator)?.upperBound
            if headEnd == nil { try fill() }
        }
        let head = String(decoding: buffer[0..<headEnd!], as: UTF8.self)
        buffer.removeFirst(headEnd!)
        let lines = head.split(separator: "\r\n")
        guard let statusLine = lines.first, statusLine.split(separator: " ").count >= 2,
            let status = Int(statusLine.split(separator: " ")[1])
        else { throw BenchmarkFailure("not an HTTP response: \(head.debugDescription)") }
        let headers = lines.dropFirst().map { $0.lowercased() }
        if let length = headers.first(where: { $0.hasPrefix("content-length:") }).flatMap({
            Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces))
        }) {
            while buffer.count < length { try fill() }
            buffer.removeFirst(length)
        } else if headers.contains(where: { $0.hasPrefix("transfer-encoding:") && $0.contains("chunked") }) {
            while true {
                var lineEnd: Int?
                while lineEnd == nil {
                    lineEnd = buffer.firstRange(of: Array("\r\n".utf8))?.lowerBound
                    if lineEnd == nil { try fill() }
                }
                let sizeText = String(decoding: buffer[0..<lineEnd!], as: UTF8.self).split(separator: ";")[0]
                guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else {
                    throw BenchmarkFailure("bad chunk size \(sizeText.debugDescription)")
                }
                let total = lineEnd! + 2 + size + 2
                while buffer.count < total { try fill() }
                buffer.removeFirst(total)
                if size == 0 { break }
            }
        } else {
            throw BenchmarkFailure("response without a length: \(head.debugDescription)")
        }
        return status
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw BenchmarkFailure(count == 0 ? "the server closed the connection" : "recv: \(String(cString: strerror(errno)))") }
            buffer += chunk[0..<count]
            return
        }
    }
}
