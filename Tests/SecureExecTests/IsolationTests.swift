import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A guest cannot see the host (README, "Security model"): it runs in its
/// own user, net, mount, pid, ipc and uts namespaces, has only a loopback
/// interface, a root holding nothing of the host's but `node` and its
/// libraries, a clean environment, and a non-root uid.
@Suite("Isolation from the host", .needsRoot, .timeLimit(.minutes(1)))
struct IsolationTests {
    /// What a guest reports about the machine it runs on.
    struct GuestView: Decodable {
        var namespaces: [String: String]
        var interfaces: [String]
        var root: [String]
        var usrBin: [String]
        var hostnameFile: String?
        var hostname: String
        var pathVisible: Bool
        var secret: String?
        var environmentKeys: [String]
        var uid: Int
        var gid: Int
    }

    static let namespaceNames = ["user", "net", "mnt", "pid", "ipc", "uts"]

    /// Prints a `GuestView` as JSON; `process.argv[2]` is a host path to look for.
    static let viewProbe = """
        const fs = require("fs"), os = require("os");
        const readOrNull = (path) => { try { return fs.readFileSync(path, "utf8"); } catch { return null; } };
        const namespaces = {};
        for (const name of \(namespaceNames)) namespaces[name] = fs.readlinkSync("/proc/self/ns/" + name);
        console.log(JSON.stringify({
          namespaces,
          interfaces: Object.keys(os.networkInterfaces()),
          root: fs.readdirSync("/").sort(),
          usrBin: fs.readdirSync("/usr/bin").sort(),
          hostnameFile: readOrNull("/etc/hostname"),
          hostname: os.hostname(),
          pathVisible: fs.existsSync(process.argv[2]),
          secret: process.env.SECURE_EXEC_TEST_SECRET ?? null,
          environmentKeys: Object.keys(process.env).sort(),
          uid: process.getuid(),
          gid: process.getgid(),
        }));
        """

    /// Runs the probe in a fresh runtime, looking for `hostPath` from inside.
    func guestView(
        root: RootImage = .standard, network: NetworkAccess = .deny, hostPath: String = #filePath
    ) async throws -> GuestView {
        let guest = try await withRuntime(root: root, permissions: Permissions(network: network)) { runtime in
            try await runtime.runGuest(Self.viewProbe, arguments: [hostPath])
        }
        try #require(guest.termination == .exited(0), "the probe failed: \(guest.stderr)")
        return try guest.json(GuestView.self)
    }

    @Test("every namespace differs from the host's")
    func ownNamespaces() async throws {
        let view = try await guestView()
        for name in Self.namespaceNames {
            let host = try #require(HostCensus.readLink("/proc/self/ns/\(name)"))
            let guest = try #require(view.namespaces[name], "the guest reported no \(name) namespace")
            #expect(guest.hasPrefix("\(name):["), "\(name): \(guest)")
            #expect(guest != host, "the guest shares the host's \(name) namespace \(host)")
        }
    }

    @Test("the only network interface is loopback, with or without the network permission", arguments: [NetworkAccess.deny, .allow])
    func loopbackOnly(network: NetworkAccess) async throws {
        let view = try await guestView(network: network)
        #expect(view.interfaces == ["lo"])
    }

    @Test("the root holds exactly the sandbox's directories and no host directory", arguments: [RootImage.minimal, .standard])
    func minimalRoot(root: RootImage) async throws {
        let view = try await guestView(root: root)
        let tools = root == .standard ? ["bin"] : []
        // sys: only the read-only view of the sandbox's own cgroups (GuestMemoryLimitTests, the sys_census probe).
        #expect(view.root == (tools + ["dev", "etc", "lib", "lib64", "proc", "sys", "tmp", "usr", "workspace"]))
        for hostOnly in ["home", "root", "opt", "srv", "var", "boot", "work", "mnt", "run"] {
            #expect(!view.root.contains(hostOnly), "the guest sees /\(hostOnly)")
        }
    }

    @Test("/usr/bin holds node (and in .standard npm, npx and env) and no other host binary")
    func onlyNode() async throws {
        #expect(try await guestView(root: .minimal).usrBin == ["node"])
        #expect(try await guestView(root: .standard).usrBin == ["env", "node", "npm", "npx"])
    }

    @Test("the guest's hostname is not the host's")
    func ownHostname() async throws {
        let view = try await guestView()
        var buffer = [CChar](repeating: 0, count: 256)
        try #require(gethostname(&buffer, buffer.count) == 0)
        let hostHostname = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        #expect(view.hostname != hostHostname)
        if let hostFile = HostCensus.readText("/etc/hostname") {
            #expect(view.hostnameFile != hostFile, "the guest reads the host's /etc/hostname")
        }
    }

    @Test("the test's own source file does not exist in the guest")
    func sourceTreeHidden() async throws {
        try #require(FileManager.default.fileExists(atPath: #filePath))
        let view = try await guestView(hostPath: #filePath)
        #expect(!view.pathVisible)
    }

    @Test("the probe can see a path that does exist (control for the source-tree check)")
    func probeSeesExistingPath() async throws {
        let view = try await guestView(hostPath: "/usr/bin/node")
        #expect(view.pathVisible)
    }

    /// The test process has variables of its own (`make test` also exports
    /// SECURE_EXEC_TEST_SECRET); none may reach the guest. (No setenv here:
    /// changing the environment while other tests' threads read it, e.g. in
    /// Foundation's Process.run, is a data race that crashed a test run.)
    @Test("nothing of the host's environment reaches the guest")
    func cleanEnvironment() async throws {
        let host = ProcessInfo.processInfo.environment
        #expect(!Set(host.keys).subtracting(["HOME", "PATH", "TMPDIR"]).isEmpty, "the host has variables to leak")
        let view = try await guestView()
        #expect(view.secret == nil)
        // The root's defaults only; .standard has npm, whose cache must be writable.
        #expect(
            view.environmentKeys == [
                "HOME", "PATH", "TMPDIR", "npm_config_cache", "npm_config_globalconfig", "npm_config_update_notifier",
            ])
        #expect(try await guestView(root: .minimal).environmentKeys == ["HOME", "PATH", "TMPDIR"])
        #expect(host["HOME"] != "/workspace")
    }

    @Test("the guest runs as uid and gid 1000, not root")
    func unprivilegedUser() async throws {
        let view = try await guestView()
        #expect(view.uid == 1000)
        #expect(view.gid == 1000)
    }
}
