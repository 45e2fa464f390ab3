#if canImport(Glibc)
import Glibc
#endif

/// A host system call a test made for its setup failed.
public struct HostCallError: Error, CustomStringConvertible {
    /// What was being done, e.g. "mkdtemp" or "connect to 127.0.0.1:3000".
    public let step: String
    public let errno: Int32

    public init(step: String, errno: Int32) {
        self.step = step
        self.errno = errno
    }

    public var description: String { "\(step) failed: \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// Something a test needs is missing or not as expected; the message says
/// what (and, for a prerequisite, how to get it).
public struct TestFailure: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) { self.description = description }
}
