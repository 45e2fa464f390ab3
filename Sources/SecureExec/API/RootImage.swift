/// What the guest's read-only root holds besides SecureExec's own files
/// (`/etc/passwd`, `/etc/hosts` and the rest of `rootfs/skeleton`, `/dev`,
/// `/proc`, `/tmp`, `/workspace`), chosen with `NodeRuntime.create(root:)`.
///
/// Whatever the image, everything in the root is read-only, nothing in it is
/// setuid or a device but SecureExec's own device nodes, and no host path
/// outside what the image names is reachable. The README's "What is inside
/// the sandbox" lists each image's files.
public enum RootImage: Sendable, Hashable {
    /// node, npm and npx, a POSIX shell at `/bin/sh`, `/usr/bin/env` and the
    /// common command-line tools scripts use (`ls`, `cat`, `grep`, `sed`,
    /// `find`, `tar`, ...). The shell and tools are the host's static
    /// busybox (Debian's `busybox-static`), npm the one installed beside the
    /// host's node (`<prefix>/lib/node_modules/npm`). The default.
    ///
    /// `create` throws `.unsupportedHost` naming what to install when the
    /// host has no busybox or no npm beside node.
    case standard
    /// node and the shared libraries it loads, nothing else: no shell, no
    /// tools, so `child_process.exec` and package scripts cannot run. The
    /// smallest surface.
    case minimal
    /// The host's `/usr` (and `/bin`, `/sbin`, `/lib*` as the host lays them
    /// out) read-only, plus a curated `/etc`: SecureExec's own `passwd`,
    /// `group`, `hosts` and the rest, and from the host only the loader
    /// cache, `alternatives`, `ssl/certs`, `ssl/openssl.cnf`, `protocols`,
    /// `services` and `mime.types`. Never the host's `/etc/shadow`, `/root`,
    /// `/home`, `/run`, `/var` or anything else outside those. For projects
    /// that need git, python or a compiler. node is the host's
    /// `/usr/bin/node` (so `create(node:)` is refused with it).
    case host
    /// An operator's prepared root filesystem (a debootstrap, an unpacked
    /// container image) at this host path, mounted read-only as the base of
    /// the root with SecureExec's own files laid over it. node is its
    /// `/usr/bin/node` (so `create(node:)` is refused with it).
    ///
    /// The path is checked like every host path (absolute, normalized, no
    /// symlink anywhere in it, a directory); `create` throws
    /// `.invalidArgument` when it is not, or when it holds no executable
    /// `/usr/bin/node` (symlinks inside it resolve within it).
    case directory(String)
}
