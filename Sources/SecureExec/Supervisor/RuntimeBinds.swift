import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// What every sandbox's root holds besides the skeleton: node and exactly
/// what its loader needs (read-only), and the host's device nodes.
enum RuntimeBinds {
    static func mounts(node: String) throws(SecureExecError) -> [HostMount] {
        var files = [RuntimeFile(hostPath: node, guestPath: Sandbox.nodePath)]
        files += try SharedLibraryResolver.runtimeFiles(forExecutable: node)
        // The guest's loader then searches exactly as the host's does (including
        // ld.so.conf directories); only the files bound here exist to be found.
        if FileManager.default.fileExists(atPath: "/etc/ld.so.cache") {
            files.append(RuntimeFile(hostPath: "/etc/ld.so.cache", guestPath: "/etc/ld.so.cache"))
        }
        // The host's own runtime files are the administrator's, not a
        // tenant's: their symlinks (/lib -> usr/lib, libfoo.so.1 -> .so.1.2)
        // are resolved here, so the mount itself follows none.
        // A loader path with ".." ($ORIGIN/../lib) is bound where it leads:
        // init creates mount points without ever resolving "..".
        let mounts = files.map {
            HostMount(
                hostPath: realPath($0.hostPath), guestPath: GuestPath.lexicallyNormalized($0.guestPath),
                attributes: .runtime)
        }
        return mounts + deviceMounts()
    }

    /// Device nodes cannot be made in a user namespace; the host's are bound instead.
    static func deviceMounts() -> [HostMount] {
        ["null", "zero", "full", "random", "urandom", "tty"].map {
            HostMount(hostPath: "/dev/\($0)", guestPath: "/dev/\($0)", attributes: .device)
        }
    }

    private static func realPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
