#if canImport(Glibc)
import Glibc
#endif
import CNamespaces

/// Helpers that turn a failed syscall into a `SecureExecError` naming it.
enum SystemCall {
    /// The errno of the last failed call, as seen by this thread.
    static var lastError: Int32 { errno }

    static func failure(_ code: SecureExecError.Code, _ what: String, step: String, errno: Int32 = Glibc.errno)
        -> SecureExecError
    {
        SecureExecError(code, "\(what): \(String(cString: strerror(errno)))", step: step, errno: errno)
    }

    /// Closes `fd`, ignoring EINTR (on Linux the descriptor is closed either way).
    static func close(_ fd: Int32) {
        if fd >= 0 { _ = Glibc.close(fd) }
    }

    /// pipe2(O_CLOEXEC): (read end, write end).
    static func pipe(step: String) throws(SecureExecError) -> (read: Int32, write: Int32) {
        var ends: [Int32] = [-1, -1]
        if se_pipe_cloexec(&ends) != 0 {
            throw failure(.ioFailed, "could not create a pipe", step: step)
        }
        return (ends[0], ends[1])
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    /// Writes all of `bytes` to a blocking descriptor.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], step: String) throws(SecureExecError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { buffer in
                Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written < 0 {
                if errno == EINTR { continue }
                throw failure(.ioFailed, "write failed", step: step)
            }
            offset += written
        }
    }
}
