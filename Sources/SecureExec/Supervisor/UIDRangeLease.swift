import CNamespaces
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A host uid/gid range held by one live sandbox, unique on the machine.
///
/// Each sandbox maps its namespace's uids 0..<65536 onto its own range of
/// unprivileged host ids, so a guest that escaped would be nobody on the host
/// and could not signal another sandbox's processes. A range is leased by
/// holding `flock` on its slot's file in `/run/secure-exec/uid-slots`, a
/// root-only directory: one name space for the whole machine whatever network
/// namespace a supervisor runs in, only root can squat a slot, and the kernel
/// drops the lock the moment its holder closes it or dies, so a crash leaks
/// no slot. (Supervisors in containers must share that directory to share
/// the machine's uids.)
///
/// Slots are picked at random among the free ones, and a slot whose file
/// changed (was taken or given back) in the last `quarantine` is passed over
/// while another is free, so the next tenant does not get the previous one's
/// uids at once.
///
/// Concurrency: acquired on the launcher's Dispatch thread; the Mutex
/// guards the lock file's descriptor so `release` is idempotent from any thread.
final class UIDRangeLease: Sendable {
    static let rangeSize: UInt32 = 65536
    static let firstBase: UInt32 = 0x7000_0000
    static let slotCount: UInt32 = 4096
    static let quarantine: Double = 60

    let base: UInt32
    private let lock: Mutex<Int32>

    private init(base: UInt32, lock: Int32) {
        self.base = base
        self.lock = Mutex(lock)
    }

    deinit { release() }

    /// Gives the range back; idempotent. The slot's file is touched first, so
    /// its quarantine starts now.
    func release() {
        let fd: Int32 = lock.withLock { fd in
            defer { fd = -1 }
            return fd
        }
        guard fd >= 0 else { return }
        Self.stamp(fd, "released by \(getpid())\n")
        SystemCall.close(fd)  // drops the flock
    }

    static func acquire() throws(SecureExecError) -> UIDRangeLease {
        let directoryFD = try StateDirectory.open("uid-slots")
        defer { SystemCall.close(directoryFD) }
        let start = UInt32.random(in: 0..<slotCount)
        var fallback: (slot: UInt32, fd: Int32, changed: Double)?
        let now = Date().timeIntervalSince1970
        for offset in 0..<slotCount {
            let slot = (start + offset) % slotCount
            guard isUnclaimed(slot: slot) else { continue }
            let fd = openat(directoryFD, "\(slot)", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else {
                if let fallback { SystemCall.close(fallback.fd) }
                throw SystemCall.failure(.sandboxSetupFailed, "could not open uid slot \(slot)", step: "uid range lease")
            }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                SystemCall.close(fd)  // held by a live sandbox
                continue
            }
            var info = stat()
            guard fstat(fd, &info) == 0 else {
                SystemCall.close(fd)
                continue
            }
            // An empty file was never used (just made by this scan).
            let changed = info.st_size == 0 ? 0 : Double(info.st_mtim.tv_sec)
            if now - changed >= quarantine {
                if let fallback { SystemCall.close(fallback.fd) }
                return take(slot: slot, fd: fd)
            }
            // Recently used: keep the least recently used one in case nothing else is free.
            if fallback == nil || changed < fallback!.changed {
                if let fallback { SystemCall.close(fallback.fd) }
                fallback = (slot, fd, changed)
            } else {
                SystemCall.close(fd)
            }
        }
        if let fallback { return take(slot: fallback.slot, fd: fallback.fd) }
        throw SecureExecError(
            .sandboxSetupFailed, "all \(slotCount) uid ranges are held by live sandboxes", step: "uid range lease")
    }

    /// Slot 4094 is systemd's "foreign" uid range (0x7FFE0000); a slot whose
    /// init or guest uid is a known user (NSS: /etc/passwd, LDAP, SSSD) belongs to
    /// someone else, who could then act on the sandbox. Both are skipped.
    private static func isUnclaimed(slot: UInt32) -> Bool {
        let base = firstBase + slot * rangeSize
        guard base != 0x7FFE_0000 else { return false }
        return !isKnownUser(base) && !isKnownUser(base + 1000)
    }

    private static func isKnownUser(_ uid: UInt32) -> Bool {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>? = nil
        var buffer = [CChar](repeating: 0, count: 4096)
        _ = getpwuid_r(uid, &entry, &buffer, buffer.count, &result)
        return result != nil
    }

    private static func take(slot: UInt32, fd: Int32) -> UIDRangeLease {
        stamp(fd, "held by \(getpid())\n")
        return UIDRangeLease(base: firstBase + slot * rangeSize, lock: fd)
    }

    /// Rewrites the slot file (its mtime is the quarantine clock; its text is for people).
    private static func stamp(_ fd: Int32, _ text: String) {
        _ = ftruncate(fd, 0)
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }
}
