import Foundation

/// Finds listening TCP sockets in a sandbox by asking the kernel, never by
/// connecting, so the guest's server sees no probe connection.
///
/// It reads `/proc/<init pid>/net/tcp` and `tcp6`, which list the sockets of
/// that process's network namespace: the sandbox's, since init lives there.
package struct ListenerProbe: Sendable {
    let initPID: Int32

    /// True if a socket in LISTEN state is bound to `port` on an address that
    /// accepts connections to `address`.
    package func isListening(port: Int, address: ListenerHost) -> Bool {
        if address != .ipv6Loopback, scan(table: "tcp", port: port, accepts: Self.acceptsIPv4Loopback) {
            return true
        }
        if scan(table: "tcp6", port: port, accepts: { Self.acceptsIPv6(address: $0, wanted: address) }) {
            return true
        }
        return false
    }

    private func scan(table: String, port: Int, accepts: (Substring) -> Bool) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/\(initPID)/net/\(table)", encoding: .ascii) else {
            return false
        }
        // "  sl  local_address rem_address   st ..." ; local is HEXADDR:HEXPORT, st 0A is LISTEN.
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 3, fields[3] == "0A" else { continue }
            let local = fields[1].split(separator: ":")
            guard local.count == 2, Int(local[1], radix: 16) == port else { continue }
            if accepts(local[0]) { return true }
        }
        return false
    }

    /// 127.0.0.1 is 0100007F in the kernel's little-endian hex; 0.0.0.0 takes every address.
    private static func acceptsIPv4Loopback(_ hex: Substring) -> Bool {
        hex == "00000000" || hex.hasSuffix("7F")
    }

    private static func acceptsIPv6(address hex: Substring, wanted: ListenerHost) -> Bool {
        let unspecified = "00000000000000000000000000000000"
        let loopback = "00000000000000000000000001000000"
        switch wanted {
        case .any: return true
        case .ipv6Loopback: return hex == unspecified || hex == loopback
        // A dual-stack [::] listener also accepts 127.0.0.1; so does ::ffff:127.x.
        case .ipv4Loopback: return hex == unspecified || (hex.hasPrefix("0000000000000000FFFF0000") && hex.hasSuffix("7F"))
        }
    }
}
