import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The host's file API sees what the guest wrote and stays inside the
/// writable areas (Files.swift): symlinks the guest plants, `..`, /proc
/// magic links and paths outside the areas are refused before anything is
/// touched, and mounts behave as they were asked to.
@Suite("Workspace: files", .needsRoot, .timeLimit(.minutes(2)))
struct WorkspaceFileTests {
    @Test("readFile returns exactly what the guest wrote, text and binary")
    func readWhatTheGuestWrote() async throws {
        try await withNodeRuntime { runtime in
            let output = try await runtime.workspaceOutput(
                """
                const fs = require("fs");
                fs.writeFileSync("/workspace/out.txt", "written by the guest\\nline 2\\n");
                fs.mkdirSync("/workspace/deep/er", { recursive: true });
                fs.writeFileSync("/workspace/deep/er/bytes.bin", Buffer.from([0, 255, 1, 128, 10, 13]));
                fs.writeFileSync("/tmp/scratch.txt", "tmp too");
                console.log("done");
                """)
            #expect(output == "done\n")
            #expect(try await runtime.readTextFile("/workspace/out.txt") == "written by the guest\nline 2\n")
            #expect(try await runtime.readFile("/workspace/deep/er/bytes.bin") == [0, 255, 1, 128, 10, 13])
            #expect(try await runtime.readTextFile("/tmp/scratch.txt") == "tmp too")
        }
    }

    @Test("writeFile then the guest reads it; remove and makeDirectory act as the guest would see")
    func writeReadRemove() async throws {
        try await withNodeRuntime { runtime in
            try await runtime.writeFile("/workspace/a/b/c.txt", text: "from the host")
            try await runtime.writeFile("/workspace/a/b/c.txt", text: "replaced")
            try await runtime.makeDirectory("/workspace/made/here")
            let seen = try await runtime.workspaceOutput(
                """
                const fs = require("fs");
                console.log(fs.readFileSync("/workspace/a/b/c.txt", "utf8"));
                console.log(fs.statSync("/workspace/made/here").isDirectory());
                """)
            #expect(seen == "replaced\ntrue\n")
            try await runtime.remove("/workspace/a")
            await expectError(.notFound, errno: ENOENT) { try await runtime.readFile("/workspace/a/b/c.txt") }
            #expect(try await runtime.workspaceListing(of: "/workspace/made") == ["here/"])
        }
    }

    @Test("readDirectory lists exactly the guest's file, directory and symlink with their kinds")
    func readDirectoryKinds() async throws {
        try await withNodeRuntime { runtime in
            let output = try await runtime.workspaceOutput(
                """
                const fs = require("fs");
                fs.writeFileSync("/workspace/note.txt", "hello");
                fs.mkdirSync("/workspace/sub");
                fs.writeFileSync("/workspace/sub/inner.txt", "inner");
                fs.symlinkSync("note.txt", "/workspace/link");
                console.log("made");
                """)
            #expect(output == "made\n")
            // Exactly these, with nothing left behind by the runtime (the guest's
            // code file is deleted once it has run).
            let listing = try await runtime.workspaceListing(of: "/workspace", includingEntryFiles: true)
            #expect(listing == ["link@", "note.txt", "sub/"])
            #expect(try await runtime.workspaceListing(of: "/workspace/sub") == ["inner.txt"])
            // A symlink that stays inside the workspace is followed for reading.
            #expect(try await runtime.readTextFile("/workspace/link") == "hello")
        }
    }

    @Test("a symlinked directory that stays inside the workspace is followed by writeFile as it is by readFile")
    func inAreaSymlinkedDirectory() async throws {
        try await withNodeRuntime { runtime in
            // Like a pnpm-style node_modules: a directory reached through a relative symlink.
            let planted = try await runtime.workspaceOutput(
                """
                const fs = require("fs");
                fs.mkdirSync("/workspace/real");
                fs.writeFileSync("/workspace/real/existing.txt", "existing");
                fs.symlinkSync("real", "/workspace/alias");
                console.log("planted");
                """)
            #expect(planted == "planted\n")
            #expect(try await runtime.readTextFile("/workspace/alias/existing.txt") == "existing")
            do {
                try await runtime.writeFile("/workspace/alias/new.txt", text: "through the alias")
            } catch {
                Issue.record("writeFile through an in-workspace symlinked directory failed: \(error)")
            }
            let seen = try await runtime.workspaceOutput(
                """
                const fs = require("fs");
                console.log(fs.existsSync("/workspace/real/new.txt") ? fs.readFileSync("/workspace/real/new.txt", "utf8") : "missing");
                console.log(fs.lstatSync("/workspace/alias").isSymbolicLink());
                """)
            #expect(seen == "through the alias\ntrue\n")
        }
    }

    @Test("writing through a guest-planted symlink to /etc/passwd is refused and the file is untouched")
    func symlinkToEtcPasswd() async throws {
        let hostPasswd = try #require(HostFiles.read("/etc/passwd"))
        try await withNodeRuntime { runtime in
            let before = try await runtime.workspaceOutput(
                """
                const fs = require("fs");
                fs.symlinkSync("/etc/passwd", "/workspace/evil");
                fs.symlinkSync("/etc", "/workspace/etc-dir");
                process.stdout.write(fs.readFileSync("/etc/passwd", "utf8"));
                """)
            #expect(before.contains("root:"), "the sandbox's /etc/passwd: \(before)")

            await expectError(.invalidArgument, "symlink as the file") {
                try await runtime.writeFile("/workspace/evil", text: "pwned::0:0::/:/bin/sh\n")
            }
            await expectError(.invalidArgument, "symlink as a parent directory") {
                try await runtime.writeFile("/workspace/etc-dir/passwd", text: "pwned::0:0::/:/bin/sh\n")
            }
            await expectError(.invalidArgument, "reading through the symlink") {
                try await runtime.readFile("/workspace/evil")
            }
            await expectError(.invalidArgument, "listing through the symlinked directory") {
                try await runtime.readDirectory("/workspace/etc-dir")
            }

            let after = try await runtime.workspaceOutput(
                """
                const fs = require("fs");
                process.stdout.write(fs.readFileSync("/etc/passwd", "utf8"));
                """)
            #expect(after == before, "the sandbox's /etc/passwd changed")
            #expect(
                try await runtime.workspaceListing(of: "/workspace") == [
                    "etc-dir@", "evil@",
                ], "the symlinks themselves must stay symlinks")
        }
        #expect(HostFiles.read("/etc/passwd") == hostPasswd, "the host's /etc/passwd changed")
    }

    @Test("/proc/1/root paths and symlinks to them are refused; the host's /etc/hostname is untouched")
    func procRootIsRefused() async throws {
        let hostHostname = try #require(HostFiles.read("/etc/hostname"))
        try await withNodeRuntime { runtime in
            await expectError(.invalidArgument, "direct /proc path") {
                try await runtime.writeFile("/proc/1/root/etc/hostname", text: "pwned\n")
            }
            let planted = try await runtime.workspaceOutput(
                """
                const fs = require("fs");
                fs.symlinkSync("/proc/1/root/etc/hostname", "/workspace/hn");
                fs.symlinkSync("/proc/self/root", "/workspace/self-root");
                console.log("planted");
                """)
            #expect(planted == "planted\n")
            await expectError(.invalidArgument, "symlink to /proc/1/root/etc/hostname") {
                try await runtime.writeFile("/workspace/hn", text: "pwned\n")
            }
            await expectError(.invalidArgument, "parent through /proc/self/root") {
                try await runtime.writeFile("/workspace/self-root/etc/hostname", text: "pwned\n")
            }
            await expectError(.invalidArgument, "reading through /proc/self/root") {
                try await runtime.readFile("/workspace/self-root/etc/hostname")
            }
        }
        #expect(HostFiles.read("/etc/hostname") == hostHostname, "the host's /etc/hostname changed")
    }

    /// Paths no file operation may take, with why.
    static let invalidPaths: [(path: String, why: String)] = [
        ("", "empty"), ("workspace/x.txt", "relative"), ("x.txt", "relative"), ("./x.txt", "relative"),
        ("/workspace/../etc/passwd", ".."), ("/workspace/a/../../etc/passwd", ".."), ("/tmp/../etc/passwd", ".."),
        ("/workspace/a/..", ".."), ("/workspace/./x.txt", "."), ("/workspace//x.txt", "//"),
        ("/etc/passwd", "outside the areas"), ("/usr/bin/x", "outside the areas"), ("/", "outside the areas"),
        ("/workspacex/file", "a prefix of an area is not the area"), ("/proc/self/root/workspace/x", "outside the areas"),
        ("/mnt/nothing-mounted/x", "no mount there"), ("/workspace/x\0.txt", "NUL"),
    ]

    @Test("paths that are empty, relative, not normalized or outside the writable areas are invalidArgument")
    func invalidPaths() async throws {
        let hostPasswd = try #require(HostFiles.read("/etc/passwd"))
        try await withNodeRuntime { runtime in
            for (path, why) in Self.invalidPaths {
                await expectError(.invalidArgument, "writeFile \(path.debugDescription) (\(why))") {
                    try await runtime.writeFile(path, text: "x")
                }
                await expectError(.invalidArgument, "readFile \(path.debugDescription) (\(why))") {
                    try await runtime.readFile(path)
                }
                await expectError(.invalidArgument, "makeDirectory \(path.debugDescription) (\(why))") {
                    try await runtime.makeDirectory(path)
                }
                await expectError(.invalidArgument, "remove \(path.debugDescription) (\(why))") {
                    try await runtime.remove(path)
                }
            }
            // Nothing was written anywhere in the workspace either.
            let listing = try await runtime.workspaceListing(of: "/workspace")
            #expect(listing.isEmpty, "\(listing)")
        }
        #expect(HostFiles.read("/etc/passwd") == hostPasswd)
        #expect(!FileManager.default.fileExists(atPath: "/usr/bin/x"))
    }

    @Test("readFile of a missing file is notFound (ENOENT)")
    func missingFile() async throws {
        try await withNodeRuntime { runtime in
            await expectError(.notFound, errno: ENOENT) { try await runtime.readFile("/workspace/missing.txt") }
            await expectError(.notFound, errno: ENOENT) { try await runtime.readTextFile("/tmp/nope/missing") }
            await expectError(.notFound, errno: ENOENT) { try await runtime.readDirectory("/workspace/no-dir") }
        }
    }

    @Test("a read-only mount is readable and refuses guest writes with EROFS")
    func readOnlyMount() async throws {
        try await withHostDirectory { directory in
            try HostFiles.write(directory + "/hello.txt", "read-only hello")
            try await withNodeRuntime(mounts: [Mount(host: directory, guest: "/mnt/ro")]) { runtime in
                let output = try await runtime.workspaceOutput(
                    """
                    const fs = require("fs");
                    console.log(fs.readFileSync("/mnt/ro/hello.txt", "utf8"));
                    for (const action of [
                      () => fs.writeFileSync("/mnt/ro/new.txt", "x"),
                      () => fs.writeFileSync("/mnt/ro/hello.txt", "x"),
                      () => fs.unlinkSync("/mnt/ro/hello.txt"),
                    ]) {
                      try { action(); console.log("allowed"); } catch (error) { console.log(error.code); }
                    }
                    """)
                #expect(output == "read-only hello\nEROFS\nEROFS\nEROFS\n")
                // The host API only writes to writable areas; a read-only mount is not one.
                await expectError(.invalidArgument) { try await runtime.writeFile("/mnt/ro/new.txt", text: "x") }
            }
            #expect(HostFiles.read(directory + "/hello.txt") == "read-only hello")
            #expect(!FileManager.default.fileExists(atPath: directory + "/new.txt"))
        }
    }

    @Test("a read-write mount shows the guest's writes on the host and takes the host API's writes")
    func readWriteMount() async throws {
        try await withHostDirectory(owner: 4242, group: 4242) { directory in
            try HostFiles.write(directory + "/seed.txt", "seeded on the host", owner: 4242, group: 4242)
            try await withNodeRuntime(mounts: [Mount(host: directory, guest: "/mnt/data", readOnly: false)]) { runtime in
                let output = try await runtime.workspaceOutput(
                    """
                    const fs = require("fs");
                    console.log(fs.readFileSync("/mnt/data/seed.txt", "utf8"));
                    fs.writeFileSync("/mnt/data/from-guest.txt", "written by the guest");
                    console.log("wrote");
                    """)
                #expect(output == "seeded on the host\nwrote\n")
                #expect(HostFiles.read(directory + "/from-guest.txt") == "written by the guest")

                try await runtime.writeFile("/mnt/data/x", text: "written by the host API")
                try await runtime.writeFile("/mnt/data/nested/y.txt", text: "nested")
                #expect(HostFiles.read(directory + "/x") == "written by the host API")
                #expect(HostFiles.read(directory + "/nested/y.txt") == "nested")
                #expect(try await runtime.readTextFile("/mnt/data/from-guest.txt") == "written by the guest")
                let seen = try await runtime.workspaceOutput(
                    #"console.log(require("fs").readFileSync("/mnt/data/x", "utf8"));"#)
                #expect(seen == "written by the host API\n")
                #expect(try await runtime.workspaceListing(of: "/mnt/data") == [
                        "from-guest.txt", "nested/",
                        "seed.txt", "x",
                    ])
            }
        }
    }
}
