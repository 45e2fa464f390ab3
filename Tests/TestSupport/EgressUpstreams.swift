import CEgress
import Foundation
import SecureExec

#if canImport(Glibc)
import Glibc
#endif

/// Servers for guests to reach through egress, in a network namespace the
/// test makes (never the host's network): the host's node runs
/// `Tests/Fixtures/egress/upstream.mjs` there, serving plain HTTP on
/// `public`:80 and :8080, HTTPS on :443 (a certificate for
/// `*.upstream.test` from the fixture CA), a TCP echo on :7000, and plain
/// HTTP on `privateAddress`:80. Runtimes reach them by dialing out from that
/// namespace (`EgressPolicy.outboundNetworkNamespace`) with names mapped by
/// `resolver`. Always `stop()` it (use `defer`).
public final class EgressUpstreams: Sendable {
    public static let publicAddress = "203.0.113.10"
    public static let privateAddress = "10.1.2.3"
    public static let publicAddress6 = "2001:db8::10"
    /// The names tests use, mapped to the servers' addresses.
    public static let names: [String: [String]] = [
        "api.upstream.test": [publicAddress],
        "secure.upstream.test": [publicAddress],
        "other.upstream.test": [publicAddress],
        "private.upstream.test": [privateAddress],
        "v6.upstream.test": [publicAddress6],
    ]
    /// The fixture CA, for the guest's NODE_EXTRA_CA_CERTS.
    public static var caCertificate: [UInt8] {
        Array((try? Data(contentsOf: URL(fileURLWithPath: fixtures + "/ca.pem"))) ?? Data())
    }
    static let fixtures = PackagePaths.root + "/Tests/Fixtures/egress"

    public let netnsFD: Int32
    private let server: HostProgram

    /// Makes the namespace and starts the servers; returns once they listen.
    public init() async throws {
        var step: UnsafePointer<CChar>? = nil
        let prefixes = ["203.0.113.0/24", "10.1.2.0/24", "2001:db8::/64"]
        let fd = prefixes.withCStringArray { se_netns_create($0, Int32(prefixes.count), &step) }
        guard fd >= 0 else { throw HostCallError(step: step.map { String(cString: $0) } ?? "netns", errno: errno) }
        netnsFD = fd
        let node = ProcessInfo.processInfo.environment["SECURE_EXEC_NODE"] ?? "/usr/bin/node"
        let arguments = [Self.fixtures + "/upstream.mjs", Self.publicAddress, Self.privateAddress, Self.publicAddress6]
        do {
            server = try Self.startInNamespace(fd) { try HostProgram(node, arguments: arguments) }
            try await server.stdout.waitUntilContains("ready", timeout: .seconds(20))
        } catch {
            close(fd)
            throw error
        }
    }

    /// What a policy names to dial out from the namespace.
    public var namespacePath: String { "/proc/\(getpid())/fd/\(netnsFD)" }

    /// A policy allowing `patterns`, resolving the test names, dialing from the namespace.
    public func policy(
        allow patterns: [String], maxConnections: Int = 256, maxBytes: Int? = nil,
        resolver: EgressResolver = .hosts(EgressUpstreams.names)
    ) throws -> EgressPolicy {
        try EgressPolicy(
            allow: patterns, resolver: resolver, maxConnections: maxConnections, maxBytes: maxBytes,
            outboundNetworkNamespace: namespacePath)
    }

    /// How many connections each server accepted (`{"plain": 3, ...}`), asked from inside the namespace.
    public func accepted() throws -> [String: Int] {
        let body = try Self.startInNamespace(netnsFD) { () throws -> [UInt8] in
            try Self.get(address: Self.publicAddress, port: 8080, path: "/stats")
        }
        let text = String(decoding: body, as: UTF8.self)
        let json = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
        let decoded = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Int]
        return (decoded ?? [:]).filter { $0.key != "plain-8080" }
    }

    /// A blocking HTTP/1.0 GET from the calling thread's namespace; the whole response.
    static func get(address: String, port: Int, path: String) throws -> [UInt8] {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HostCallError(step: "socket", errno: errno) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, address, &target.sin_addr)
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw HostCallError(step: "connect", errno: errno) }
        let request = Array("GET \(path) HTTP/1.0\r\n\r\n".utf8)
        guard write(fd, request, request.count) == request.count else { throw HostCallError(step: "write", errno: errno) }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(fd, &chunk, chunk.count)
            if count < 0 { throw HostCallError(step: "read", errno: errno) }
            if count == 0 { return response }
            response += chunk[0..<count]
        }
    }

    public func stop() {
        server.stop()
        close(netnsFD)
    }

    /// Runs `start` on a thread of its own that first joins the namespace, so
    /// what it starts (a host program) lives there; no Swift concurrency or
    /// Dispatch thread changes namespace.
    static func startInNamespace<T: Sendable>(_ fd: Int32, _ start: @escaping @Sendable () throws -> T) throws -> T {
        let result = LockedBox<Result<T, any Error>>()
        let thread = Thread {
            if joinNetworkNamespace(fd, 0x4000_0000 /* CLONE_NEWNET */) != 0 {
                result.set(.failure(HostCallError(step: "setns", errno: errno)))
            } else {
                result.set(Result { try start() })
            }
            result.signal()
        }
        thread.start()
        result.wait()
        return try result.get().get()
    }
}

/// setns(2): Glibc's module does not export it (it is a GNU extension).
@_silgen_name("setns")
private func joinNetworkNamespace(_ fd: Int32, _ type: Int32) -> Int32

/// One value handed from a thread to its starter.
private final class LockedBox<Value: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: Value?
    private var done = false

    func set(_ value: Value) {
        condition.lock()
        self.value = value
        condition.unlock()
    }

    func signal() {
        condition.lock()
        done = true
        condition.signal()
        condition.unlock()
    }

    func wait() {
        condition.lock()
        while !done { condition.wait() }
        condition.unlock()
    }

    func get() -> Value {
        condition.lock()
        defer { condition.unlock() }
        return value!
    }
}

extension Array where Element == String {
    /// Calls `body` with a C array of C strings valid for the call.
    func withCStringArray<R>(_ body: (UnsafePointer<UnsafePointer<CChar>>) -> R) -> R {
        let copies = map { UnsafePointer(strdup($0)!) }
        defer { copies.forEach { free(UnsafeMutablePointer(mutating: $0)) } }
        return copies.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
