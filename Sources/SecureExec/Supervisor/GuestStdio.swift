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
            // stdin is a socket pair, not a pipe: the host writes with MSG_NOSIGNAL,
            // so a guest that closes its stdin can never raise SIGPIPE in the host.
            var stdinPair: [Int32] = [-1, -1]
            guard se_stream_pair(&stdinPair) == 0 else {
                throw SystemCall.failure(.spawnFailed, "could not create the stdin socket", step: "socketpair stdin")
            }
            opened += stdinPair
            shutdown(stdinPair[1], Int32(SHUT_WR))
            shutdown(stdinPair[0], Int32(SHUT_RD))
            let out = try SystemCall.pipe(step: "stdout pipe")
            opened += [out.read, out.write]
            let err = try SystemCall.pipe(step: "stderr pipe")
            opened += [err.read, err.write]
            var guestEnds = [stdinPair[1], out.write, err.write]
            if let code {
                let memfd = se_memfd("guest-code")
                guard memfd >= 0 else {
                    throw SystemCall.failure(.spawnFailed, "could not hold the guest's code", step: "memfd_create")
                }
                opened.append(memfd)
                try SystemCall.writeAll(memfd, Array(code.utf8), step: "write code")
                guestEnds.append(memfd)
            }
            return GuestStdio(guestEnds: guestEnds, hostEnds: (stdinPair[0], out.read, err.read))
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
