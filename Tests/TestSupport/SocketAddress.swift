#if canImport(Glibc)
import Glibc
#endif

/// Calls `body` with a sockaddr for `host` (an IPv4 or IPv6 literal) and
/// `port`, or returns nil if `host` is not such a literal.
public func withSocketAddress<T>(host: String, port: Int, _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> T) rethrows -> T? {
    if host.contains(":") {
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = UInt16(port).bigEndian
        guard inet_pton(AF_INET6, host, &address.sin6_addr) == 1 else { return nil }
        return try withSocketAddress(of: &address, body)
    }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { return nil }
    return try withSocketAddress(of: &address, body)
}

/// Calls `body` with `address` (a `sockaddr_in`, `sockaddr_in6` or
/// `sockaddr_un`) as a `sockaddr` pointer and `length` (the whole struct by default).
public func withSocketAddress<Address, T>(
    of address: inout Address, length: Int = MemoryLayout<Address>.size, _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> T
) rethrows -> T {
    try withUnsafePointer(to: &address) {
        try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(length)) }
    }
}

/// The TCP port the IPv4 or IPv6 socket `fd` is bound to (getsockname).
public func boundPort(of fd: Int32) throws -> Int {
    var address = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw HostCallError(step: "getsockname", errno: errno) }
    let port = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_port }  // same offset in sockaddr_in6
    }
    return Int(UInt16(bigEndian: port))
}
