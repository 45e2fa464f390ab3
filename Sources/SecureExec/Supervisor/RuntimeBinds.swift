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

    /// The host's time zone as the guest sees it: the zone file bound read-only
    /// where the host keeps it (below a `zoneinfo` directory) with the guest's
    /// /etc/localtime linked to it, as on the host, since ICU (node's `Date`
    /// and `Intl`) takes the zone's name from that link and glibc reads the
    /// file. A host /etc/localtime that is a file of its own is bound as it
    /// is (no name, so ICU may fall back to an offset); no /etc/localtime, no
    /// zone: UTC. A `TZ` given to a guest wins over all of it. Left out when
    /// one of the caller's mounts covers where it would go.
    static func timeZone(hostLink: String = "/etc/localtime", besides callerMounts: [HostMount] = [])
        -> (mount: HostMount, link: String?)?
    {
        var info = stat()
        guard lstat(hostLink, &info) == 0 else { return nil }
        let file = realPath(hostLink)
        var zone: (mount: HostMount, link: String?)
        if (info.st_mode & S_IFMT) == S_IFLNK, let marker = file.range(of: "/zoneinfo/"),
            GuestPath.isNormalizedAbsolute("/" + file[marker.upperBound...])
        {
            let guestPath = "/usr/share/zoneinfo/" + file[marker.upperBound...]
            zone = (HostMount(hostPath: file, guestPath: guestPath, attributes: .runtime), guestPath)
        } else {
            zone = (HostMount(hostPath: file, guestPath: "/etc/localtime", attributes: .runtime), nil)
        }
        guard FileManager.default.fileExists(atPath: file),
            !callerMounts.contains(where: { GuestPath.isInside(zone.mount.guestPath, area: $0.guestPath) })
        else { return nil }
        return zone
    }

    private static func realPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
