import CNamespaces
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The init program as a sealed, executable memfd, made once per process.
///
/// Every sandbox execs this descriptor (execveat with AT_EMPTY_PATH), so
/// replacing the file on disk after start-up, or through /proc/self/exe from
/// inside a sandbox, cannot change what becomes PID 1. The descriptor lives
/// as long as the process.
enum InitImage {
    private static let cache = Mutex<[String: Int32]>([:])

    static func descriptor(for path: String) throws(SecureExecError) -> Int32 {
        let result: Result<Int32, SecureExecError> = cache.withLock { images in
            if let fd = images[path] { return .success(fd) }
            let fd = se_sealed_copy(path)
            if fd < 0 {
                return .failure(SystemCall.failure(.unsupportedHost, "could not load \(path)", step: "seal init program"))
            }
            images[path] = fd
            return .success(fd)
        }
        return try result.get()
    }
}
