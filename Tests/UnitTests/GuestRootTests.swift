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

    @Test("node gets its heap limit from memoryBytes in every root; another program's arguments stay as given")
    func heapLimitIsNodes() {
        let limits = Limits(memoryBytes: 256 << 20)
        for root in [RootImage.standard, .minimal, .host, .directory("/srv/root")] {
            let node = InitProtocol.spawnRecords(SpawnRequest(), entry: "/workspace/e.js", limits: limits, root: root)
            #expect(node.contains("arg=--max-old-space-size=192"), "\(root)")
        }
        var program = SpawnRequest()
        program.executable = "/usr/bin/npx"
        program.arguments = ["vite"]
        let records = InitProtocol.spawnRecords(program, entry: nil, limits: limits, root: .standard)
        #expect(records.filter { $0.hasPrefix("arg=") } == ["arg=/usr/bin/npx", "arg=vite"])
    }

    @Test("guests' defaults: PATH, HOME, TMPDIR; npm's cache, no update check and no host global config where the root has npm")
    func environments() {
        let base = ["PATH": "/usr/bin:/bin", "HOME": "/workspace", "TMPDIR": "/tmp"]
        let npm = [
            "npm_config_cache": "/tmp/.npm", "npm_config_update_notifier": "false", "npm_config_globalconfig": "/etc/npmrc",
        ]
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
            _ = try GuestRoot.locateBusybox(environment: [:], candidates: ["/nonexistent/busybox"])
            Issue.record("a missing busybox was accepted")
        } catch {
            #expect(error.code == .unsupportedHost)
            #expect(error.message.contains("busybox-static"), "\(error)")
            #expect(error.message.contains(".minimal"), "\(error)")
        }
    }

    @Test("SECURE_EXEC_BUSYBOX naming no executable file is an error naming it, never skipped for the usual places")
    func busyboxVariable() throws {
        for path in ["/nonexistent/busybox", "/etc/passwd", "/usr"] {
            do {
                _ = try GuestRoot.locateBusybox(environment: ["SECURE_EXEC_BUSYBOX": path], candidates: ["/bin/sh"])
                Issue.record("SECURE_EXEC_BUSYBOX=\(path) was skipped")
            } catch {
                #expect(error.code == .unsupportedHost)
                #expect(error.step == "locate SECURE_EXEC_BUSYBOX")
                #expect(error.message.contains("SECURE_EXEC_BUSYBOX") && error.message.contains(path), "\(error)")
            }
        }
        #expect(try GuestRoot.locateBusybox(environment: ["SECURE_EXEC_BUSYBOX": "/bin/sh"], candidates: []) == "/bin/sh")
        #expect(try GuestRoot.locateBusybox(environment: ["SECURE_EXEC_BUSYBOX": ""], candidates: ["/bin/sh"]) == "/bin/sh")
    }

    @Test("the host's zone in each root: bound where the root lacks it, only linked where the root shows it, a directory's own")
    func timeZones() throws {
        var template = Array("/tmp/secure-exec-unit-XXXXXX".utf8CString)
        let scratch = try #require(mkdtemp(&template).map { String(cString: $0) })
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        // The "host": a zone file in <scratch>/share/zoneinfo and a localtime link to it.
        let zoneFile = scratch + "/share/zoneinfo/Asia/Tokyo"
        try FileManager.default.createDirectory(atPath: scratch + "/share/zoneinfo/Asia", withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: zoneFile, contents: Data("TZif".utf8)))
        try FileManager.default.createSymbolicLink(atPath: scratch + "/localtime", withDestinationPath: zoneFile)
        let link = "/usr/share/zoneinfo/Asia/Tokyo"

        // Node's own roots: the file is bound and linked.
        let plain = GuestRoot(binds: [], symlinks: [], base: nil)
        let bound = try #require(plain.timeZone(besides: [], hostLink: scratch + "/localtime"))
        #expect(bound.file?.hostPath == zoneFile && bound.file?.guestPath == link)
        #expect(bound.link == link)
        // A root that shows the host's /usr/share (as .host shows /usr): only the link.
        let host = GuestRoot(
            binds: [HostMount(hostPath: scratch + "/share", guestPath: "/usr/share", attributes: .runtime)], symlinks: [], base: nil)
        let linked = try #require(host.timeZone(besides: [], hostLink: scratch + "/localtime"))
        #expect(linked.file == nil && linked.link == link)
        // A caller's mount over /etc (or /etc/localtime) hides the link: no zone.
        let etc = HostMount(hostPath: "/srv/etc", guestPath: "/etc", attributes: .readOnly)
        #expect(plain.timeZone(besides: [etc], hostLink: scratch + "/localtime") == nil)

        // An operator's root: its own zone file of that name, or nothing.
        let directory = scratch + "/root"
        try FileManager.default.createDirectory(atPath: directory + "/usr/share/zoneinfo/Asia", withIntermediateDirectories: true)
        let operatorRoot = GuestRoot(
            binds: [], symlinks: [], base: HostMount(hostPath: directory, guestPath: "/", attributes: .runtime))
        #expect(operatorRoot.timeZone(besides: [], hostLink: scratch + "/localtime") == nil)
        #expect(FileManager.default.createFile(atPath: directory + link, contents: Data("TZif".utf8)))
        let own = try #require(operatorRoot.timeZone(besides: [], hostLink: scratch + "/localtime"))
        #expect(own.file == nil && own.link == link)
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
