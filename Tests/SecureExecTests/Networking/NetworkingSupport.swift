import Foundation
import SecureExec
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

// Helpers for the host <-> guest networking suites: guest servers, tests
// that take turns, and host-side sockets (for `expose`).

/// `withRuntime` with the network allowed (guests may listen on loopback),
/// run under `measuredExclusively`: for tests that make load or check when a timeout fires.
func withMeasuredNetworkRuntime<Result: Sendable>(_ body: (NodeRuntime) async throws -> Result) async throws -> Result {
    try await measuredExclusively { try await withRuntime(permissions: Permissions(network: .allow), body) }
}

extension NodeRuntime {
    /// Spawns `code` and returns once it listens on every one of `ports`
    /// (failing at once if it exits first).
    func startServer(_ code: String, ports: [Int], host: ListenerHost = .any) async throws -> StartedGuest {
        let guest = try await startGuest(code)
        for port in ports { try await waitForListener(port: port, host: host, process: guest.process) }
        return guest
    }

    /// Spawns `code` and returns once it listens on `port`.
    func startServer(_ code: String, port: Int, host: ListenerHost = .any) async throws -> StartedGuest {
        try await startServer(code, ports: [port], host: host)
    }
}

/// Runs `body` while no other networking test that makes load or checks
/// when a timeout fires runs (the suites otherwise run in parallel).
///
/// On a 2-core machine, a thousand concurrent fetches or a 256 MiB transfer
/// starve every other task of CPU for seconds; a test that checks a 500 ms
/// timeout fires on time, or that counts the connections of sequential
/// fetches, would then see the neighbour, not the behaviour. The load tests
/// and those tests therefore take turns; the rest still run alongside.
func measuredExclusively<Result: Sendable>(_ body: () async throws -> Result) async throws -> Result {
    try await measuredSlot.withSlot(body)
}

private let measuredSlot = Slots(count: 1)

/// Milliseconds in `duration`, for messages.
func milliseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
}

// MARK: - Host sockets (the client side of `expose`)

/// Runs blocking socket work on a thread of its own, never on a
/// cooperative-pool thread (two of them on a 2-core machine: blocking one
/// could stall the very tasks the socket waits for).
func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}

/// A blocking TCP client socket on the host, for talking to an exposed port
/// the way a browser or curl would. Every read and write times out after
/// `ioTimeout` instead of hanging the test. Closed by `close()` or when released.
final class HostSocket: Sendable {
    private let fd: Int32
    /// Bytes read from the socket but not handed out yet.
    private let pending = Mutex<[UInt8]>([])
    private let closed = Atomic<Bool>(false)

    private init(fd: Int32) { self.fd = fd }

    /// Connects to `host` (an IPv4 or IPv6 literal) on `port`.
    static func connect(host: String = "127.0.0.1", port: Int, ioTimeout: Duration = .seconds(10)) async throws -> HostSocket {
        try await onOwnThread { try connectBlocking(host: host, port: port, ioTimeout: ioTimeout) }
    }

    private static func connectBlocking(host: String, port: Int, ioTimeout: Duration) throws -> HostSocket {
        let family = host.contains(":") ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HostCallError(step: "socket", errno: errno) }
        let socket = HostSocket(fd: fd)  // closes fd if anything below throws
        var timeout = timeval(tv_sec: Int(ioTimeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = withSocketAddress(host: host, port: port) { address, length in
            Glibc.connect(fd, address, length) == 0
        }
        guard connected == true else { throw HostCallError(step: "connect to \(host):\(port)", errno: errno) }
        return socket
    }

    func send(_ text: String) async throws { try await send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) async throws {
        try await onOwnThread { [self] in
            var sent = 0
            while sent < bytes.count {
                let count = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { throw HostCallError(step: "send", errno: errno) }
                sent += count
            }
        }
    }

    /// The next bytes to arrive (those already buffered first), or [] at end of stream.
    func receiveSome() async throws -> [UInt8] {
        try await onOwnThread { [self] in
            let buffered = pending.withLock { pending in
                defer { pending = [] }
                return pending
            }
            return buffered.isEmpty ? try receiveOnce() : buffered
        }
    }

    /// Bytes up to and including the first `needle`; what follows stays buffered.
    func receive(through needle: String) async throws -> [UInt8] {
        let needle = Array(needle.utf8)
        return try await onOwnThread { [self] in
            var data = pending.withLock { pending in
                defer { pending = [] }
                return pending
            }
            while true {
                if let end = Self.find(needle, in: data) {
                    pending.withLock { $0 = Array(data[end...]) }
                    return Array(data[..<end])
                }
                let more = try receiveOnce()
                guard !more.isEmpty else { throw TestFailure("the stream ended before \(needle)") }
                data += more
            }
        }
    }

    /// Exactly `count` bytes; throws if the stream ends first.
    func receive(exactly count: Int) async throws -> [UInt8] {
        try await onOwnThread { [self] in
            var data = pending.withLock { pending in
                defer { pending = [] }
                return pending
            }
            while data.count < count {
                let more = try receiveOnce()
                guard !more.isEmpty else { throw TestFailure("the stream ended after \(data.count) of \(count) bytes") }
                data += more
            }
            pending.withLock { $0 = Array(data[count...]) }
            return Array(data[..<count])
        }
    }

    /// Everything until the peer closes.
    func receiveToEnd() async throws -> [UInt8] {
        var data: [UInt8] = []
        while true {
            let more = try await receiveSome()
            if more.isEmpty { return data }
            data += more
        }
    }

    /// One recv(2): [] means end of stream. Throws on error or after the I/O timeout.
    private func receiveOnce() throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw HostCallError(step: "recv", errno: errno) }
            return Array(buffer[..<count])
        }
    }

    /// Closes the socket (both directions). Idempotent.
    func close() {
        guard closed.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        shutdown(fd, Int32(SHUT_RDWR))  // wakes a read still blocked on another thread
        Glibc.close(fd)
    }

    deinit { close() }

    static func find(_ needle: [UInt8], in data: [UInt8]) -> Int? {
        guard data.count >= needle.count, !needle.isEmpty else { return nil }
        for start in 0...(data.count - needle.count) where data[start..<(start + needle.count)].elementsEqual(needle) {
            return start + needle.count
        }
        return nil
    }
}

/// Host ports: finding a free one, and checking one is free.
enum HostPorts {
    /// A port nothing listens on at `host` right now: the kernel's pick for a
    /// socket bound there and closed at once.
    static func free(host: String = "0.0.0.0") throws -> Int {
        let fd = socket(host.contains(":") ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HostCallError(step: "socket", errno: errno) }
        defer { Glibc.close(fd) }
        guard withSocketAddress(host: host, port: 0, { bind(fd, $0, $1) }) == 0 else {
            throw HostCallError(step: "bind \(host):0", errno: errno)
        }
        return try boundPort(of: fd)
    }

    /// Whether a listening socket can be bound to `host:port` now (it is bound, put in LISTEN and closed).
    ///
    /// SO_REUSEADDR is set so that connections lingering in TIME_WAIT do not
    /// count; on Linux it still fails with EADDRINUSE while anything LISTENs there.
    static func canListen(host: String, port: Int) -> Bool {
        let fd = socket(host.contains(":") ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        return withSocketAddress(host: host, port: port, { bind(fd, $0, $1) }) == 0 && listen(fd, 1) == 0
    }
}

// MARK: - A minimal HTTP/1.1 client and response parser for host sockets

/// An HTTP/1.1 response read off a host socket.
struct RawHTTPResponse {
    let status: Int
    /// Header names lowercased, in order.
    let headers: [(name: String, value: String)]

    func header(_ name: String) -> String? { headers.first { $0.name == name.lowercased() }?.value }

    /// Parses a head (status line and headers, through the blank line).
    init(head: [UInt8]) throws {
        let lines = String(decoding: head, as: UTF8.self).components(separatedBy: "\r\n")
        let statusFields = lines[0].split(separator: " ", maxSplits: 2)
        guard statusFields.count >= 2, statusFields[0] == "HTTP/1.1", let status = Int(statusFields[1]) else {
            throw TestFailure("cannot parse the status line \(lines[0].debugDescription)")
        }
        self.status = status
        headers = lines.dropFirst().compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
    }
}

extension HostSocket {
    /// Sends `GET path` with `Connection: close` and reads the whole response (content-length framed bodies).
    func get(_ path: String, host: String = "localhost") async throws -> (response: RawHTTPResponse, body: [UInt8]) {
        try await send("GET \(path) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n")
        let response = try RawHTTPResponse(head: try await receive(through: "\r\n\r\n"))
        return (response, try await receiveToEnd())
    }
}

// MARK: - WebSocket frames (RFC 6455), the client side

/// One WebSocket frame as the host test client sends and reads it.
struct WebSocketFrame: Equatable {
    static let text: UInt8 = 0x1
    static let close: UInt8 = 0x8

    var opcode: UInt8
    var payload: [UInt8]

    /// The frame as a client must send it: FIN set, payload masked with `mask`.
    func encodedMasked(mask: [UInt8] = [0x37, 0xfa, 0x21, 0x3d]) -> [UInt8] {
        var frame: [UInt8] = [0x80 | opcode]
        switch payload.count {
        case ..<126:
            frame.append(0x80 | UInt8(payload.count))
        case ..<65536:
            frame.append(0x80 | 126)
            frame += [UInt8(payload.count >> 8), UInt8(payload.count & 0xff)]
        default:
            frame.append(0x80 | 127)
            frame += (0..<8).reversed().map { UInt8((payload.count >> ($0 * 8)) & 0xff) }
        }
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        return frame
    }

    /// Reads one server frame; throws if it is masked (a server must not mask) or fragmented.
    static func read(from socket: HostSocket) async throws -> WebSocketFrame {
        let start = try await socket.receive(exactly: 2)
        guard start[0] & 0x80 != 0 else { throw TestFailure("websocket: fragmented frame") }
        guard start[1] & 0x80 == 0 else { throw TestFailure("websocket: the server masked its frame") }
        var length = Int(start[1] & 0x7f)
        if length == 126 {
            length = try await socket.receive(exactly: 2).reduce(0) { $0 << 8 | Int($1) }
        } else if length == 127 {
            length = try await socket.receive(exactly: 8).reduce(0) { $0 << 8 | Int($1) }
        }
        return WebSocketFrame(opcode: start[0] & 0x0f, payload: try await socket.receive(exactly: length))
    }
}
