import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A read-write mount must not let a guest leave anything on the host that
/// grants more than the guest had: no setuid or setgid file or directory (by
/// chmod, fchmod, a create mode or a copy), no file given away to another
/// owner, no device node, and no hard link to a file outside the mount. What
/// matters is checked on the host, with `lstat`, after the sandbox is gone.
@Suite("Mounts: no privilege can be planted", .needsRoot, .timeLimit(.minutes(1)))
struct PrivilegePlantingTests {
    /// The modes a guest tries to set: setuid, setgid, both, and setuid alone.
    static let privilegedModes = [0o4755, 0o2755, 0o6755, 0o4000]

    struct Attempt: Decodable {
        var path: String
        var mode: Int
        var result: String
    }

    @Test("chmod and fchmod with a setuid or setgid bit fail with EPERM, and the host file has neither bit", arguments: ["chmod", "fchmod"])
    func chmodPrivilegeBits(call: String) async throws {
        try await withPrivateHostDirectory { host in
            let attempts = try await withNodeRuntime(mounts: [Mount(host: host, guest: "/data", readOnly: false)]) { runtime in
                try await runtime.mountJSON(
                    """
                    const call = \(GuestPrograms.jsString(call));
                    const change = (path, mode) => attempt(() => {
                      if (call === "chmod") return fs.chmodSync(path, mode);
                      const fd = fs.openSync(path, "r");
                      try { fs.fchmodSync(fd, mode); } finally { fs.closeSync(fd); }
                    });
                    const attempts = [];
                    for (const mode of \(Self.privilegedModes)) {
                      const file = "/data/file-" + mode.toString(8), dir = "/data/dir-" + mode.toString(8);
                      fs.writeFileSync(file, "#!/bin/sh\\nid\\n");
                      fs.mkdirSync(dir);
                      attempts.push({ path: file, mode, result: change(file, mode) });
                      attempts.push({ path: dir, mode, result: change(dir, mode) });
                    }
                    // The control: modes without those bits change as usual.
                    fs.writeFileSync("/data/plain", "x");
                    attempts.push({ path: "/data/plain", mode: 0o700, result: change("/data/plain", 0o700) });
                    console.log(JSON.stringify(attempts));
                    """, as: [Attempt].self)
            }
            #expect(attempts.count == Self.privilegedModes.count * 2 + 1)
            for attempt in attempts {
                let guestPath = attempt.path
                let hostPath = host + guestPath.dropFirst("/data".count)
                let ownership = try HostFiles.ownership(hostPath)
                if guestPath == "/data/plain" {
                    #expect(attempt.result == "ok", "\(call)(\(guestPath), 0o700)")
                    #expect(ownership.mode == 0o700, "\(guestPath): \(ownership)")
                } else {
                    #expect(attempt.result == "EPERM", "\(call)(\(guestPath), 0o\(String(attempt.mode, radix: 8)))")
                    #expect(!ownership.hasPrivilegeBits, "\(guestPath) is \(ownership) on the host")
                }
            }
        }
    }

    @Test("creating a file or directory with a setuid or setgid mode fails with EPERM or leaves neither bit on the host")
    func createWithPrivilegeBits() async throws {
        try await withPrivateHostDirectory { host in
            let attempts = try await withNodeRuntime(mounts: [Mount(host: host, guest: "/data", readOnly: false)]) { runtime in
                try await runtime.mountJSON(
                    """
                    const attempts = [];
                    for (const mode of \(Self.privilegedModes)) {
                      const suffix = mode.toString(8);
                      attempts.push({ path: "/data/open-" + suffix, mode,
                        result: attempt(() => fs.closeSync(fs.openSync("/data/open-" + suffix, "w", mode))) });
                      attempts.push({ path: "/data/write-" + suffix, mode,
                        result: attempt(() => fs.writeFileSync("/data/write-" + suffix, "#!/bin/sh\\n", { mode })) });
                      attempts.push({ path: "/data/mkdir-" + suffix, mode,
                        result: attempt(() => fs.mkdirSync("/data/mkdir-" + suffix, { mode })) });
                    }
                    console.log(JSON.stringify(attempts));
                    """, as: [Attempt].self)
            }
            #expect(attempts.count == Self.privilegedModes.count * 3)
            for attempt in attempts {
                let hostPath = host + attempt.path.dropFirst("/data".count)
                #expect(["ok", "EPERM"].contains(attempt.result), "\(attempt.path) mode 0o\(String(attempt.mode, radix: 8)): \(attempt.result)")
                guard HostFiles.exists(hostPath) else {
                    #expect(attempt.result == "EPERM", "\(attempt.path) was reported made but is not on the host")
                    continue
                }
                let ownership = try HostFiles.ownership(hostPath)
                #expect(!ownership.hasPrivilegeBits, "\(attempt.path) is \(ownership) on the host")
                #expect(ownership.owner == MountIDs.owner && ownership.group == MountIDs.group, "\(attempt.path) is \(ownership)")
            }
        }
    }

    @Test("copying a setuid file from a read-only mount into a read-write one does not carry the bit to the host")
    func copySetuidFile() async throws {
        try await withPrivateHostDirectory { source in
            try HostFiles.write(source + "/tool", "#!/bin/sh\nid\n", owner: MountIDs.owner, group: MountIDs.group, mode: 0o6755)
            try #require(try HostFiles.ownership(source + "/tool").hasPrivilegeBits, "control: the host file is setuid")
            try await withPrivateHostDirectory { host in
                let mounts = [Mount(host: source, guest: "/src"), Mount(host: host, guest: "/data", readOnly: false)]
                let results = try await withNodeRuntime(mounts: mounts) { runtime in
                    try await runtime.mountJSON(
                        """
                        console.log(JSON.stringify([
                          attempt(() => fs.copyFileSync("/src/tool", "/data/copied")),
                          attempt(() => fs.cpSync("/src/tool", "/data/cp", { preserveTimestamps: true })),
                        ]));
                        """, as: [String].self)
                }
                for (name, result) in zip(["copied", "cp"], results) {
                    #expect(["ok", "EPERM"].contains(result), "\(name): \(result)")
                    if HostFiles.exists(host + "/" + name) {
                        let ownership = try HostFiles.ownership(host + "/" + name)
                        #expect(!ownership.hasPrivilegeBits, "\(name) is \(ownership) on the host")
                    }
                }
            }
        }
    }

    @Test("a guest cannot give a file in a read-write mount away to another owner")
    func chownToOthersRefused() async throws {
        try await withPrivateHostDirectory { host in
            struct Outcome: Decodable {
                var toRoot: String
                var toNobody: String
                var toRootGroup: String
                var linkToRoot: String
                var toSelf: String
            }
            let outcome = try await withNodeRuntime(mounts: [Mount(host: host, guest: "/data", readOnly: false)]) { runtime in
                try await runtime.mountJSON(
                    """
                    fs.writeFileSync("/data/file", "x");
                    fs.symlinkSync("file", "/data/link");
                    console.log(JSON.stringify({
                      toRoot: attempt(() => fs.chownSync("/data/file", 0, 0)),
                      toNobody: attempt(() => fs.chownSync("/data/file", 65534, 65534)),
                      toRootGroup: attempt(() => fs.chownSync("/data/file", 1000, 0)),
                      linkToRoot: attempt(() => fs.lchownSync("/data/link", 0, 0)),
                      toSelf: attempt(() => fs.chownSync("/data/file", 1000, 1000)),
                    }));
                    """, as: Outcome.self)
            }
            for (name, result) in [
                ("toRoot", outcome.toRoot), ("toNobody", outcome.toNobody), ("toRootGroup", outcome.toRootGroup),
                ("linkToRoot", outcome.linkToRoot),
            ] {
                // EOVERFLOW: the idmapped mount has no mapping for the new owner, so the kernel cannot store it.
                #expect(["EPERM", "EINVAL", "EOVERFLOW"].contains(result), "\(name): \(result)")
            }
            #expect(outcome.toSelf == "ok")
            for name in ["file", "link"] {
                let ownership = try HostFiles.ownership(host + "/" + name)
                #expect(ownership.owner == MountIDs.owner && ownership.group == MountIDs.group, "\(name) is \(ownership) on the host")
            }
        }
    }

    @Test("a hard link between a read-write mount and anything outside it fails with EXDEV")
    func hardLinkAcrossMountRefused() async throws {
        try await withPrivateHostDirectory { source in
            try HostFiles.write(source + "/other.txt", "another mount's file", owner: MountIDs.owner, group: MountIDs.group)
            try await withPrivateHostDirectory { host in
                let mounts = [Mount(host: source, guest: "/src"), Mount(host: host, guest: "/data", readOnly: false)]
                let results = try await withNodeRuntime(mounts: mounts) { runtime in
                    try await runtime.mountJSON(
                        """
                        fs.writeFileSync("/tmp/x", "tmp");
                        fs.writeFileSync("/workspace/x", "workspace");
                        fs.writeFileSync("/data/inside", "inside");
                        console.log(JSON.stringify({
                          fromTmp: attempt(() => fs.linkSync("/tmp/x", "/data/x")),
                          fromWorkspace: attempt(() => fs.linkSync("/workspace/x", "/data/w")),
                          fromOtherMount: attempt(() => fs.linkSync("/src/other.txt", "/data/other")),
                          fromNode: attempt(() => fs.linkSync("/usr/bin/node", "/data/node")),
                          fromEtc: attempt(() => fs.linkSync("/etc/passwd", "/data/passwd")),
                          outToTmp: attempt(() => fs.linkSync("/data/inside", "/tmp/inside")),
                        }));
                        """, as: [String: String].self)
                }
                #expect(results.count == 6)
                for (name, result) in results.sorted(by: { $0.key < $1.key }) {
                    #expect(result == "EXDEV", "\(name): \(result)")
                }
                #expect(HostFiles.listing(host) == ["inside"])
            }
        }
    }

    @Test("a hard link within one read-write mount works (the control for the EXDEV refusals)")
    func hardLinkWithinMount() async throws {
        try await withPrivateHostDirectory { host in
            let result = try await withNodeRuntime(mounts: [Mount(host: host, guest: "/data", readOnly: false)]) { runtime in
                try await runtime.mountJSON(
                    #"fs.writeFileSync("/data/a", "same"); console.log(JSON.stringify(attempt(() => fs.linkSync("/data/a", "/data/b"))));"#,
                    as: String.self)
            }
            #expect(result == "ok")
            #expect(try HostFiles.status(host + "/b").st_nlink == 2)
        }
    }

    @Test("mknod of a device node in a read-write mount is denied, and no node appears on the host (native probe, mount at /tmp)")
    func mknodDenied() async throws {
        let binary = try EscapeProbe.hostPath()
        try await withPrivateHostDirectory { host in
            // The probe makes /tmp/secure-exec-probe-mem (char 1:1, /dev/mem's numbers); with
            // the host directory mounted read-write at /tmp, that is where it lands if allowed.
            let mounts = [EscapeProbe.mount(for: binary), Mount(host: host, guest: "/tmp", readOnly: false)]
            let result = try await withNodeRuntime(permissions: EscapeProbe.permissions, mounts: mounts) { runtime in
                try await EscapeProbe.run("mknod", hostBinary: binary, in: runtime)
            }
            #expect(result.line.hasPrefix("BLOCKED mknod "), "\(result)")
            #expect(!HostFiles.exists(host + "/secure-exec-probe-mem"), "a device node reached the host")
        }
    }
}
