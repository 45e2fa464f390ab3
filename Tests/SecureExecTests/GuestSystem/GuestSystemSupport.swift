import Foundation
import TestSupport
import Testing

@testable import SecureExec

#if canImport(Glibc)
import Glibc
#endif

// Helpers for the guest-system suites (GuestSystem/*.swift): a project the
// way developers lay one out (package.json scripts, a node_modules/.bin tool
// with a `#!/usr/bin/env node` line, a dev server that shells out), a root
// filesystem built from the host's node, and ways to run commands and read
// what they printed. Names start with `GuestSystem` or `Project` so other
// suites' helpers never collide with these.

/// A small project: `npm run dev` starts a node:http server on $PORT (5173)
/// that answers every request with the URL and what `ls | wc -l` printed
/// in the workspace; `npm run build` writes dist/out.txt through a shell
/// pipeline; `npm test` exits with $TEST_EXIT; `hello-tool` is an installed
/// bin; `scripts/tool.py` is a script for an interpreter `.standard` lacks.
enum GuestProject {
    static let port = 5173

    static let files: [(path: String, text: String, mode: mode_t)] = [
        (
            "package.json",
            """
            {
              "name": "guest-system-demo",
              "version": "1.0.0",
              "private": true,
              "scripts": {
                "dev": "node server.js",
                "build": "mkdir -p dist && echo built > dist/out.txt && ls | wc -l",
                "test": "node test.js",
                "hello": "hello-tool from-script"
              }
            }
            """, 0o644
        ),
        (
            "server.js",
            """
            const http = require("node:http");
            const { exec } = require("node:child_process");
            http.createServer((req, res) => {
              exec("ls | wc -l", (error, stdout) => {
                res.setHeader("content-type", "application/json");
                res.end(JSON.stringify({ url: req.url, files: error ? String(error) : stdout.trim() }));
              });
            }).listen(Number(process.env.PORT || 5173), "127.0.0.1", () => console.log("dev server ready"));
            """, 0o644
        ),
        ("test.js", #"console.log("tests ran"); process.exit(Number(process.env.TEST_EXIT || 0));"#, 0o644),
        (
            "node_modules/hello-tool/package.json",
            #"{ "name": "hello-tool", "version": "1.0.0", "bin": { "hello-tool": "bin/hello.js" } }"#, 0o644
        ),
        (
            "node_modules/hello-tool/bin/hello.js",
            """
            #!/usr/bin/env node
            console.log("hello-tool ran with " + JSON.stringify(process.argv.slice(2)));
            """, 0o755
        ),
        ("scripts/tool.py", "#!/usr/bin/python3\nprint('python ran')\n", 0o755),
    ]

    /// What `ls | wc -l` prints in the project's root.
    static var topLevelCount: Int { Set(files.map { $0.path.split(separator: "/")[0] }).count }

    /// Writes the project into `directory` (this process's files).
    static func write(into directory: String) throws {
        for file in files {
            try HostFiles.write(directory + "/" + file.path, file.text, mode: file.mode)
        }
        try HostFiles.makeDirectory(directory + "/node_modules/.bin")
        try HostFiles.symlink(directory + "/node_modules/.bin/hello-tool", to: "../hello-tool/bin/hello.js")
    }
}

/// Runs `body` with the project written to a fresh host directory.
@discardableResult
func withGuestProject<Result>(_ body: (String) async throws -> Result) async throws -> Result {
    try await withHostDirectory { directory in
        try GuestProject.write(into: directory)
        return try await body(directory)
    }
}

/// Network and child processes: what a dev server started by a command needs.
let commandPermissions = Permissions(network: .allow, childProcess: .allow)

/// Runs `body` with a runtime whose workspace is the project (an overlay),
/// the given root, network and child processes allowed.
func withProjectRuntime<Result: Sendable>(
    root: RootImage = .standard, permissions: Permissions = commandPermissions,
    _ body: (NodeRuntime) async throws -> Result
) async throws -> Result {
    try await withGuestProject { directory in
        try await withRuntime(root: root, permissions: permissions, workspace: Workspace(host: directory), body)
    }
}

/// A root filesystem built in a fresh host directory from the host's own
/// node: `/usr/bin/node` and its shared libraries (hard links where the
/// file system allows, copies otherwise), `/etc/motd` and an `/etc/passwd`
/// of the operator's, and with `shell`, the host's busybox at `/bin/busybox`
/// with `/bin/sh` linked to it.
func withBuiltRoot<Result>(shell: Bool, _ body: (String) async throws -> Result) async throws -> Result {
    try await withHostDirectory { root in
        let node = try RuntimeAssets.locate(node: nil).node
        try GuestSystemFiles.place(node, at: root + "/usr/bin/node")
        for library in try GuestSystemFiles.libraries(of: node) {
            try GuestSystemFiles.place(library.hostPath, at: root + library.guestPath)
        }
        try HostFiles.write(root + "/etc/motd", "the operator's root\n")
        try HostFiles.write(root + "/etc/passwd", "operator:x:0:0:operator:/root:/bin/sh\n")
        if shell {
            let candidates: [String] = ["/usr/bin/busybox", "/bin/busybox"]
            let busybox = try #require(candidates.first { access($0, X_OK) == 0 })
            try GuestSystemFiles.place(busybox, at: root + "/bin/busybox")
            try HostFiles.symlink(root + "/bin/sh", to: "busybox")
        }
        return try await body(root)
    }
}

enum GuestSystemFiles {
    /// Where node's loader finds its interpreter and libraries (as SecureExec's
    /// own resolver reads them), with the host file behind each.
    static func libraries(of executable: String) throws -> [(guestPath: String, hostPath: String)] {
        try SharedLibraryResolver.runtimeFiles(forExecutable: executable)
            .filter { !$0.guestPath.contains("/..") }
            .map { ($0.guestPath, $0.hostPath) }
    }

    /// `source` at `destination` (parents made): a hard link, or a copy across file systems.
    static func place(_ source: String, at destination: String) throws {
        try FileManager.default.createDirectory(
            atPath: (destination as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let real = (source as NSString).resolvingSymlinksInPath
        if Glibc.link(real, destination) != 0 {
            try FileManager.default.copyItem(atPath: real, toPath: destination)
        }
    }
}

extension ExecResult {
    /// For a failed expectation: how it ended and what it printed.
    var summary: String { "\(termination); stdout: \(stdoutText.debugDescription); stderr: \(stderrText.debugDescription)" }
}
