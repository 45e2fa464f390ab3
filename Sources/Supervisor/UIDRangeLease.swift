import CNamespaces
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A host uid/gid range held by one live sandbox, unique on the machine.
///
/// Each sandbox maps its namespace's uids 0..<65536 onto its own range of
/// unprivileged host ids, so a guest that escaped would be nobody on the host
/// and could not signal another sandbox's processes. The lease is an abstract
/// unix socket bound to a name per slot: binding fails while any process on
/// the machine (this one or another supervisor) holds the slot, and the kernel
/// releases it the moment the holder closes it or dies, so a crash leaks no
/// slot and no file is left behind.
final class UIDRangeLease: Sendable {
    static let rangeSize: UInt32 = 65536
    static let firstBase: UInt32 = 0x7000_0000
    static let slotCount: UInt32 = 4096
    private static let nextSlot = Atomic<UInt32>(0)

    let base: UInt32
    private let socket: Mutex<Int32>

    private init(base: UInt32, socket: Int32) {
        self.base = base
        self.socket = Mutex(socket)
    }

    deinit { release() }

    /// Gives the range back; idempotent.
    func release() {
        let fd: Int32 = socket.withLock { fd in
            defer { fd = -1 }
            return fd
        }
        SystemCall.close(fd)
    }

    static func acquire() throws(SecureExecError) -> UIDRangeLease {
        let start = nextSlot.wrappingAdd(1, ordering: .relaxed).oldValue
        for offset in 0..<slotCount {
            let slot = (start &+ offset) % slotCount
            let fd = se_unix_stream_socket()
            if fd < 0 { throw SystemCall.failure(.sandboxSetupFailed, "socket for uid lease", step: "uid range lease") }
            if bindAbstract(fd, name: "secure-exec/uid-range/\(slot)") {
                return UIDRangeLease(base: firstBase + slot * rangeSize, socket: fd)
            }
            let error = errno
            SystemCall.close(fd)
            if error != EADDRINUSE {
                throw SystemCall.failure(.sandboxSetupFailed, "could not lease a uid range", step: "uid range lease", errno: error)
            }
        }
        throw SecureExecError(
            .sandboxSetupFailed, "all \(slotCount) uid ranges are held by live sandboxes", step: "uid range lease")
    }

    private static func bindAbstract(_ fd: Int32, name: String) -> Bool {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(name.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { path in
            path[0] = 0  // abstract namespace: no file on disk
            for (index, byte) in bytes.enumerated() { path[index + 1] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) == 0 }
        }
    }
}
