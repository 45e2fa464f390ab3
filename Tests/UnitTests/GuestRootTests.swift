import Foundation
import TestSupport
import Testing

@testable import SecureExec

/// What each root image asks of init and of the host, checked without a
/// sandbox: the spawn records of a program other than node, the guests'
/// default environment, the records that lay the root out, and the errors
/// of a host that lacks what `.standard` needs.
@Suite("Root images: requests and host lookups")
struct GuestRootTests {
    @Test("an executable's spawn: exe is its path, argv[0] too, arguments as given, no node flags")
    func executableRecords() {
        var request = SpawnRequest()
        request.executable = "/bin/sh"
        request.arguments = ["-c", "npm run dev"]
        request.nodeOptions = ["--require", "/x.js"]
        let records = InitProtocol.spawnRecords(request, entry: nil, limits: Limits(), root: .standard)
        #expect(records.prefix(5) == ["exe=/bin/sh", "cwd=/workspace", "arg=/bin/sh", "arg=-c", "arg=npm run dev"])
        #expect(records.filter { $0.hasPrefix("arg=") }.count == 3)
    }

    @Test("guests' defaults: PATH, HOME, TMPDIR; npm's cache and no update check where the root has npm")
    func environments() {
        let base = ["PATH": "/usr/bin:/bin", "HOME": "/workspace", "TMPDIR": "/tmp"]
        let npm = ["npm_config_cache": "/tmp/.npm", "npm_config_update_notifier": "false"]
        #expect(RootImage.minimal.guestEnvironment == base)
        #expect(RootImage.standard.guestEnvironment == base.merging(npm) { $1 })
        let wider = base.merging(npm) { $1 }.merging(["PATH": "/usr/local/bin:/usr/bin:/bin"]) { $1 }
        #expect(RootImage.host.guestEnvironment == wider)
        #expect(RootImage.directory("/srv/root").guestEnvironment == wider)
        let records = InitProtocol.spawnRecords(SpawnRequest(), entry: nil, limits: Limits(), root: .standard)
        #expect(records.contains("env=npm_config_cache=/tmp/.npm"))
    }

    @Test("the root's records: a symlink is path, space, target; a base claims a descriptor")
    func layoutRecords() {
        #expect(InitProtocol.symlinkRecord(.init(path: "/bin/sh", target: "busybox")) == "symlink=/bin/sh busybox")
        #expect(InitProtocol.rootBaseRecord == "root=directory")
    }

    @Test("a host without busybox: .standard fails naming what to install and the way out")
    func noBusybox() {
        do {
            _ = try GuestRoot.locateBusybox(candidates: ["/nonexistent/busybox"])
            Issue.record("a missing busybox was accepted")
        } catch {
            #expect(error.code == .unsupportedHost)
            #expect(error.message.contains("busybox-static"), "\(error)")
            #expect(error.message.contains(".minimal"), "\(error)")
        }
    }

    @Test("a node without npm beside it: .standard fails naming where npm was looked for")
    func noNPM() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("se-no-npm-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory + "/bin", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(FileManager.default.createFile(atPath: directory + "/bin/node", contents: Data()))
        do {
            _ = try GuestRoot.locateNPM(node: directory + "/bin/node")
            Issue.record("a node without npm was accepted")
        } catch {
            #expect(error.code == .unsupportedHost)
            #expect(error.message.contains(directory + "/lib/node_modules/npm"), "\(error)")
        }
    }

    @Test("a mount may not cover the image's symlinks or lie inside them")
    func mountsOverSymlinks() throws {
        let runtime = ["/usr/bin/node", "/bin/sh", "/usr/lib/node_modules/npm"]
        let mount = { (guest: String) in HostMount(hostPath: "/srv/x", guestPath: guest, attributes: .readOnly) }
        for refused in ["/bin", "/bin/sh", "/usr/lib/node_modules", "/usr/lib/node_modules/npm/lib"] {
            #expect(throws: SecureExecError.self, "\(refused)") { try MountRules.checkConflicts([mount(refused)], runtime: runtime) }
        }
        try MountRules.checkConflicts([mount("/bin2"), mount("/usr/lib/node_modules2")], runtime: runtime)
    }

    @Test("the README's \"What is inside the sandbox\" lists exactly the tools .standard links")
    func readmeListsTools() throws {
        let readme = try String(contentsOfFile: PackagePaths.root + "/README.md", encoding: .utf8)
        let marker = "linked to it in `/bin`: `"
        let start = try #require(readme.range(of: marker)).upperBound
        let listed = readme[start...].prefix { $0 != "`" }.split(separator: " ").map(String.init)
        #expect(listed == GuestRoot.busyboxApplets.filter { $0 != "sh" }.sorted())
    }

    @Test("the tools the issue names are all linked")
    func namedTools() {
        let named = "ls cat cp mv rm mkdir rmdir ln chmod touch echo printf test [ true false pwd basename dirname head tail wc sort uniq tr cut grep sed find xargs env sleep date mktemp tar gzip"
        let missing = Set(named.split(separator: " ").map(String.init)).subtracting(GuestRoot.busyboxApplets)
        #expect(missing.isEmpty, "\(missing)")
        #expect(GuestRoot.busyboxApplets.first == "sh")
        #expect(Set(GuestRoot.busyboxApplets).count == GuestRoot.busyboxApplets.count)
    }
}
