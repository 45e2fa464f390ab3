#if canImport(Glibc)
import Glibc
#endif

/// The one error type every public SecureExec call throws.
///
/// `code` says what kind of failure it was (codes can be added without breaking
/// callers, so switch with a `default`); `message` says what failed and why in
/// words; `step` and `errno` pin it to the syscall or stage that failed when
/// there was one.
///
/// `withNodeRuntime` and `fetchStreaming` also pass on whatever their own
/// closure throws, unchanged. It is `Sendable` and `Equatable` (all four
/// fields compared), so it crosses tasks and compares in tests.
public struct SecureExecError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Sendable {
            case invalidArgument
            case unsupportedHost
            case sandboxSetupFailed
            case spawnFailed
            case processExited
            case listenerTimeout
            case connectionFailed
            case timeout
            case protocolError
            case responseTooLarge
            case disposed
            case ioFailed
            case cancelled
            case notFound
            case guestFailed
            case decodingFailed
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The caller passed something that can never work (port 0, CR/LF in a header, a negative timeout).
        public static let invalidArgument = Code(.invalidArgument)
        /// This host cannot run sandboxes (not root, no user namespaces, node missing).
        public static let unsupportedHost = Code(.unsupportedHost)
        /// Creating the sandbox failed at `step`.
        public static let sandboxSetupFailed = Code(.sandboxSetupFailed)
        /// Starting a guest process failed at `step`.
        public static let spawnFailed = Code(.spawnFailed)
        /// The guest process being waited on exited first.
        public static let processExited = Code(.processExited)
        /// Nothing listened on the port before the deadline.
        public static let listenerTimeout = Code(.listenerTimeout)
        /// Dialing the guest's port failed (refused, unreachable).
        public static let connectionFailed = Code(.connectionFailed)
        /// An operation ran past its deadline.
        public static let timeout = Code(.timeout)
        /// The guest spoke malformed HTTP or closed mid-message.
        public static let protocolError = Code(.protocolError)
        /// A collected response body was larger than the caller's cap.
        public static let responseTooLarge = Code(.responseTooLarge)
        /// The runtime was disposed.
        public static let disposed = Code(.disposed)
        /// A read, write or other syscall on the host side failed.
        public static let ioFailed = Code(.ioFailed)
        /// The calling task was cancelled.
        public static let cancelled = Code(.cancelled)
        /// A file or directory in the sandbox does not exist.
        public static let notFound = Code(.notFound)
        /// Guest code run for a result failed (threw, exited non-zero, was killed).
        public static let guestFailed = Code(.guestFailed)
        /// The value guest code returned (`run`) does not decode as the type asked for.
        public static let decodingFailed = Code(.decodingFailed)

        /// The code's name as spelled in Swift, e.g. `invalidArgument`.
        public var description: String { value.rawValue }
    }

    /// What kind of failure this is; compare it with the static codes of `Code`.
    public let code: Code
    /// What failed and why, in words.
    public let message: String
    /// The stage or syscall that failed, when there was one (e.g. `"pivot_root"`).
    public let step: String?
    /// The errno the failing syscall returned, when there was one.
    public let errno: Int32?
    /// The caller's own error, as it was thrown, when that is what failed:
    /// a body or data stream given to `writeFile(_:contentsOf:)` or `fetch(_:bodyStream:)`.
    public let underlyingError: (any Error)?

    /// An error of kind `code` with its `message`, and the failing `step` and
    /// `errno` when there were ones, and the caller's own error it wraps.
    ///
    /// SecureExec's own calls make these; a caller may too (a test double, a
    /// wrapper that reports its own failures the same way).
    public init(_ code: Code, _ message: String, step: String? = nil, errno: Int32? = nil, underlyingError: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.step = step
        self.errno = errno
        self.underlyingError = underlyingError
    }

    /// Equal when `code`, `message`, `step` and `errno` are (an underlying
    /// error need not be `Equatable`; its description is in the message).
    public static func == (lhs: SecureExecError, rhs: SecureExecError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message && lhs.step == rhs.step && lhs.errno == rhs.errno
    }

    /// `code: message`, then `[step: ...]` and `[errno N: strerror text]` when
    /// set: one line for a log.
    public var description: String {
        var text = "\(code): \(message)"
        if let step { text += " [step: \(step)]" }
        if let errno { text += " [errno \(errno): \(String(cString: strerror(errno)))]" }
        return text
    }
}
