#if canImport(Glibc)
import Glibc
#endif

/// An `IPAddress` to and from the kernel's socket addresses: one place for
/// the dialer (`NetnsDialer`) and egress (`EgressGateway`).
extension IPAddress {
    /// The address of a `sockaddr` of family AF_INET or AF_INET6.
    init?(socketAddress: UnsafePointer<sockaddr>) {
        switch Int32(socketAddress.pointee.sa_family) {
        case AF_INET:
            let address = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
            guard let (ip, _) = Self.from(address) else { return nil }
            self = ip
        case AF_INET6:
            let address = socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee }
            guard let (ip, _) = Self.from(address) else { return nil }
            self = ip
        default: return nil
        }
    }

    /// Fills `storage` with this address and `port`; returns the length used.
    func socketAddress(port: Int, into storage: inout sockaddr_storage) -> socklen_t {
        withUnsafeMutableBytes(of: &storage) { raw in
            if isIPv4 {
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = in_port_t(UInt16(port).bigEndian)
                withUnsafeMutableBytes(of: &address.sin_addr) { $0.copyBytes(from: bytes) }
                raw.storeBytes(of: address, as: sockaddr_in.self)
                return socklen_t(MemoryLayout<sockaddr_in>.size)
            }
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = in_port_t(UInt16(port).bigEndian)
            withUnsafeMutableBytes(of: &address.sin6_addr) { $0.copyBytes(from: bytes) }
            raw.storeBytes(of: address, as: sockaddr_in6.self)
            return socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
    }

    static func from(_ address: sockaddr_in) -> (IPAddress, Int)? {
        guard Int32(address.sin_family) == AF_INET else { return nil }
        let bytes = withUnsafeBytes(of: address.sin_addr) { Array($0) }
        return IPAddress(bytes: bytes).map { ($0, Int(UInt16(bigEndian: address.sin_port))) }
    }

    static func from(_ address: sockaddr_in6) -> (IPAddress, Int)? {
        guard Int32(address.sin6_family) == AF_INET6 else { return nil }
        let bytes = withUnsafeBytes(of: address.sin6_addr) { Array($0) }
        return IPAddress(bytes: bytes).map { ($0, Int(UInt16(bigEndian: address.sin6_port))) }
    }
}
