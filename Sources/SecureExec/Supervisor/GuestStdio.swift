import CNamespaces

#if canImport(Glibc)
import Glibc
#endif

/// The descriptors of one guest about to start: the guest's ends travel to
/// init with the spawn request (and are closed here once sent); the host's
/// ends become the guest's `GuestRecord`.
final class GuestStdio {
    /// stdin, stdout, stderr, and the code memfd when there is code.
    let guestEnds: [Int32]
    private var hostEnds: (stdin: Int32, stdout: Int32, stderr: Int32)

    private init(guestEnds: [Int32], hostEnds: (stdin: Int32, stdout: Int32, stderr: Int32)) {
        self.guestEnds = guestEnds
        self.hostEnds = hostEnds
    }

    static func make(code: String?) throws(SecureExecError) -> GuestStdio {
        var opened: [Int32] = []
        do throws(SecureExecError) {
            // All three are socket pairs shut down to one direction, not pipes.
            // The host writes stdin with MSG_NOSIGNAL, so a guest that closes
            // it can never raise SIGPIPE in the host. And once the guest's end
            // of stdout or stderr is closed the host reads EOF for good: a
            // pipe could be reopened for writing through /proc/self/fd after
            // its hang-up, which the reader (NIO) treats as impossible.
            func oneWay(_ name: String, hostReads: Bool) throws(SecureExecError) -> (host: Int32, guest: Int32) {
                var pair: [Int32] = [-1, -1]
                guard se_stream_pair(&pair) == 0 else {
                    throw SystemCall.failure(.spawnFailed, "could not create the \(name) socket", step: "socketpair \(name)")
                }
                opened += pair
                shutdown(pair[0], Int32(hostReads ? SHUT_WR : SHUT_RD))
                shutdown(pair[1], Int32(hostReads ? SHUT_RD : SHUT_WR))
                return (pair[0], pair[1])
            }
            let input = try oneWay("stdin", hostReads: false)
            let out = try oneWay("stdout", hostReads: true)
            let err = try oneWay("stderr", hostReads: true)
            var guestEnds = [input.guest, out.guest, err.guest]
            if let code {
                let memfd = se_memfd("guest-code")
                guard memfd >= 0 else {
                    throw SystemCall.failure(.spawnFailed, "could not hold the guest's code", step: "memfd_create")
                }
                opened.append(memfd)
                try SystemCall.writeAll(memfd, Array(code.utf8), step: "write code")
                guestEnds.append(memfd)
            }
            return GuestStdio(guestEnds: guestEnds, hostEnds: (input.host, out.host, err.host))
        } catch {
            opened.forEach(SystemCall.close)
            throw error
        }
    }

    /// The host's ends now belong to the caller; only the guest's are closed at the end.
    func handOverHostEnds() -> (stdin: Int32, stdout: Int32, stderr: Int32) {
        defer { hostEnds = (-1, -1, -1) }
        return hostEnds
    }

    deinit {
        (guestEnds + [hostEnds.stdin, hostEnds.stdout, hostEnds.stderr]).forEach(SystemCall.close)
    }
}
