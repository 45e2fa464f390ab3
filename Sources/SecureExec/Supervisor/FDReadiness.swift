#if canImport(Glibc)
import Glibc
#endif

/// Waits until a descriptor is writable (or 50 ms pass, so callers re-check
/// their state).
///
/// A `poll` on a Dispatch thread (`Blocking`), not a Dispatch write source:
/// the descriptors waited on here are ones a guest can hang up at any
/// moment (its stdin, a file operation's data socket), and libdispatch's
/// epoll backend can free a source's bookkeeping while its manager thread
/// still delivers that hang-up (ARCHITECTURE.md, "Concurrency model"). The
/// caller keeps `fd` open until this returns.
enum FDReadiness {
    static func writable(_ fd: Int32) async {
        await Blocking.run {
            var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&entry, 1, 50)
        }
    }
}
