import SecureExec
import TestSupport
import Testing

/// Guest paths a mount may never take (`MountRules`): `create` refuses them
/// with `.invalidArgument` while it checks its input, before anything that
/// needs root, so no sandbox is ever built here. (Where mounts may go, and the
/// refusals that need a sandbox's runtime files, are in Mounts/MountPlacementTests.)
@Suite("Mount rules: guest paths refused before anything starts", .timeLimit(.minutes(1)))
struct MountRulesTests {
    /// Guest paths no mount may take: the root, the kernel's interfaces and
    /// everything below them, the workspace itself.
    static let reservedPaths = [
        "/", "/proc", "/proc/self", "/proc/sys/kernel", "/dev", "/dev/shm", "/dev/null", "/dev/pts", "/sys", "/sys/fs/cgroup",
        "/workspace",
    ]

    @Test("a mount over the root, /proc, /dev, /sys (or below them) or the workspace itself is refused at create", arguments: reservedPaths, [true, false])
    func reservedPathRefused(guest: String, readOnly: Bool) async throws {
        try await withHostDirectory { host in
            try HostFiles.write(host + "/planted", "the host's")
            await expectError(.invalidArgument, "\(guest) readOnly=\(readOnly)") {
                try await NodeRuntime.create(mounts: [Mount(host: host, guest: guest, readOnly: readOnly)])
            }
        }
    }

    @Test(
        "a guest path that is not absolute and normalized is refused at create",
        arguments: ["data", "", "/data/", "//data", "/data//cache", "/data/./cache", "/data/../usr/bin", "/workspace/.."])
    func malformedGuestPathRefused(guest: String) async throws {
        try await withHostDirectory { host in
            await expectError(.invalidArgument, "\(guest.debugDescription)") {
                try await NodeRuntime.create(mounts: [Mount(host: host, guest: guest)])
            }
        }
    }
}
