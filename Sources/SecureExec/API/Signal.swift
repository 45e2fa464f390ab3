
#if canImport(Glibc)
import Glibc
#endif

/// A POSIX signal to send to a guest process.
///
/// Use the named constants (`.terminate`, `.kill`, ...) or build one from a
/// number or a name; an unknown one is `.invalidArgument`, never a trap.
public struct Signal: Sendable, Hashable, CustomStringConvertible {
    /// The signal number on this platform.
    public let rawValue: Int32

    private static let names: [(String, Int32)] = [
        ("SIGHUP", SIGHUP), ("SIGINT", SIGINT), ("SIGQUIT", SIGQUIT), ("SIGILL", SIGILL), ("SIGTRAP", SIGTRAP),
        ("SIGABRT", SIGABRT), ("SIGBUS", SIGBUS), ("SIGFPE", SIGFPE), ("SIGKILL", SIGKILL), ("SIGUSR1", SIGUSR1),
        ("SIGSEGV", SIGSEGV), ("SIGUSR2", SIGUSR2), ("SIGPIPE", SIGPIPE), ("SIGALRM", SIGALRM), ("SIGTERM", SIGTERM),
        ("SIGSTKFLT", 16), ("SIGCHLD", SIGCHLD), ("SIGCONT", SIGCONT), ("SIGSTOP", SIGSTOP), ("SIGTSTP", SIGTSTP),
        ("SIGTTIN", SIGTTIN), ("SIGTTOU", SIGTTOU), ("SIGURG", SIGURG), ("SIGXCPU", SIGXCPU), ("SIGXFSZ", SIGXFSZ),
        ("SIGVTALRM", SIGVTALRM), ("SIGPROF", SIGPROF), ("SIGWINCH", SIGWINCH), ("SIGIO", SIGIO), ("SIGPWR", 30),
        ("SIGSYS", SIGSYS),
    ]

    /// A signal by number: 1-31 or a real-time signal (34-64). Anything else is `.invalidArgument`.
    ///
    /// - Throws: `.invalidArgument` (step `signal`) for 0, 32, 33, a negative
    ///   number or one above 64.
    public init(_ number: Int32) throws(SecureExecError) {
        guard (1...31).contains(number) || (34...64).contains(number) else {
            throw SecureExecError(.invalidArgument, "\(number) is not a signal number (1-31, 34-64)", step: "signal")
        }
        rawValue = number
    }

    /// A signal by name, with or without the SIG prefix, any case ("TERM", "sigkill").
    ///
    /// - Throws: `.invalidArgument` (step `signal`) for a name that is not one of
    ///   Linux's 31 standard signals (real-time signals have no name here: use
    ///   `init(_:)`).
    public init(named name: String) throws(SecureExecError) {
        let upper = name.uppercased()
        let full = upper.hasPrefix("SIG") ? upper : "SIG" + upper
        guard let match = Self.names.first(where: { $0.0 == full }) else {
            throw SecureExecError(.invalidArgument, "\(name) is not a known signal name", step: "signal")
        }
        rawValue = match.1
    }

    private init(unchecked number: Int32) { rawValue = number }

    /// SIGHUP (1): the terminal hung up; servers often reload on it.
    public static let hangup = Signal(unchecked: SIGHUP)
    /// SIGINT (2): what Ctrl-C sends; node exits unless it has a handler.
    public static let interrupt = Signal(unchecked: SIGINT)
    /// SIGQUIT (3): quit; ends node (core dumps are off in a sandbox).
    public static let quit = Signal(unchecked: SIGQUIT)
    /// SIGKILL (9): ends the process at once; it cannot be caught or ignored.
    public static let kill = Signal(unchecked: SIGKILL)
    /// SIGUSR1 (10): for the guest's own use; node's default is to start its inspector.
    public static let user1 = Signal(unchecked: SIGUSR1)
    /// SIGUSR2 (12): for the guest's own use.
    public static let user2 = Signal(unchecked: SIGUSR2)
    /// SIGTERM (15): asks the process to end; the default of `GuestProcess.kill()`
    /// and what `NodeRuntime.dispose()` sends first.
    public static let terminate = Signal(unchecked: SIGTERM)

    static func fromKernel(_ number: Int32) -> Signal { Signal(unchecked: number) }

    /// The conventional name, e.g. "SIGTERM".
    public var name: String { Self.names.first(where: { $0.1 == rawValue })?.0 ?? "SIG\(rawValue)" }
    /// The conventional name, as `name`.
    public var description: String { name }
}
