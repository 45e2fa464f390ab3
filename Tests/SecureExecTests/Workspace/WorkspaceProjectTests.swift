import Foundation
import SecureExec
import TestSupport
import Testing

/// An uploaded multi-file project runs as it would on the host (README,
/// "Uploading a project"): relative ESM imports across nested directories, JSON
/// modules, a working directory of its own, and packages from a mounted
/// `node_modules` resolved by both `require` and `import`.
@Suite(
    "Workspace: multi-file projects and node_modules", .needsRoot,
    .timeLimit(.minutes(2)))
struct WorkspaceProjectTests {
    /// A dev server in /workspace/app whose answer is built from all three of
    /// its files: itself, ./lib/greet.mjs (which imports ./lib/util/punctuation.mjs)
    /// and ./data.json.
    static let project: [String: String] = [
        "/workspace/app/server.mjs": """
            import http from "node:http";
            import { greet } from "./lib/greet.mjs";
            import data from "./data.json" with { type: "json" };
            http.createServer((req, res) => {
              res.writeHead(200, { "content-type": "text/plain" });
              res.end(`${greet(data.name)} count=${data.count} tags=${data.tags.join("+")} url=${req.url} cwd=${process.cwd()}`);
            }).listen(3000, "127.0.0.1", () => console.log("project listening"));
            """,
        "/workspace/app/lib/greet.mjs": """
            import { bang } from "./util/punctuation.mjs";
            export function greet(name) { return "Hello, " + name + bang; }
            """,
        "/workspace/app/lib/util/punctuation.mjs": """
            export const bang = "!";
            """,
        "/workspace/app/data.json": """
            { "name": "sandbox", "count": 3, "tags": ["esm", "json"] }
            """,
    ]

    /// What the project's server answers to GET /greeting.
    static let expectedBody = "Hello, sandbox! count=3 tags=esm+json url=/greeting cwd=/workspace/app"

    /// Starts the project's server from its entry file, fetches /greeting and stops it.
    static func serveProject(in runtime: NodeRuntime) async throws -> FetchResponse {
        let stdout = GuestOutput()
        let stderr = GuestOutput()
        let server = try await runtime.spawnFile(
            "/workspace/app/server.mjs", workingDirectory: "/workspace/app", onStdout: stdout.sink,
            onStderr: stderr.sink)
        do {
            try await runtime.waitForListener(port: 3000, process: server)
            let response = try await runtime.fetch(3000, path: "/greeting")
            #expect(stdout.text == "project listening\n", "stderr: \(stderr.text)")
            server.kill()
            #expect(try await server.wait() == .signaled(.terminate))
            return response
        } catch {
            server.kill(.kill)
            _ = try await server.wait()
            Issue.record("the project's server failed; its stderr: \(stderr.text)")
            throw error
        }
    }

    @Test("a project written with writeFile runs from its entry file, in its own working directory")
    func projectWrittenWithWriteFile() async throws {
        try await withNodeRuntime(permissions: Permissions(network: .allow)) { runtime in
            for (path, text) in Self.project.sorted(by: { $0.key < $1.key }) {
                try await runtime.writeFile(path, text: text)
            }
            #expect(try await runtime.workspaceListing(of: "/workspace/app") == [
                    "data.json", "lib/",
                    "server.mjs",
                ])
            #expect(try await runtime.workspaceListing(of: "/workspace/app/lib") == [
                    "greet.mjs", "util/",
                ])
            let response = try await Self.serveProject(in: runtime)
            #expect(response.status == 200)
            #expect(response.bodyText == Self.expectedBody)
        }
    }

    @Test("the same project given to create(files:) is in place when create returns")
    func projectGivenToCreate() async throws {
        let files = Self.project.mapValues { Array($0.utf8) }
        try await withNodeRuntime(permissions: Permissions(network: .allow), files: files) { runtime in
            for (path, text) in Self.project {
                #expect(try await runtime.readTextFile(path) == text, "\(path)")
            }
            let response = try await Self.serveProject(in: runtime)
            #expect(response.status == 200)
            #expect(response.bodyText == Self.expectedBody)
        }
    }

    @Test("a package in a mounted node_modules resolves by require (CommonJS) and by import (ESM)")
    func mountedNodeModules() async throws {
        try await withHostDirectory { directory in
            let package = directory + "/node_modules/tiny-pkg"
            // "exports" sends require to index.js and import to index.mjs, so
            // the guest's answer shows which condition Node took.
            try HostFiles.write(
                package + "/package.json",
                """
                {
                  "name": "tiny-pkg",
                  "version": "1.0.0",
                  "main": "index.js",
                  "exports": { ".": { "import": "./index.mjs", "require": "./index.js" } }
                }
                """)
            try HostFiles.write(
                package + "/index.js",
                """
                module.exports = { shout: (text) => text.toUpperCase() + "!", via: "require" };
                """)
            try HostFiles.write(
                package + "/index.mjs",
                """
                import cjs from "./index.js";
                export default { ...cjs, via: "import" };
                """)

            try await withNodeRuntime(nodeModules: directory + "/node_modules") { runtime in
                let required = try await runtime.exec(
                    """
                    const tiny = require("tiny-pkg");
                    console.log(tiny.shout("hi") + " via " + tiny.via + " from " + require.resolve("tiny-pkg"));
                    """)
                #expect(required.termination == .exited(0), "stderr: \(required.stderrText)")
                #expect(required.stdoutText == "HI! via require from /workspace/node_modules/tiny-pkg/index.js\n")

                let imported = try await runtime.exec(
                    """
                    import tiny from "tiny-pkg";
                    console.log(tiny.shout("hi") + " via " + tiny.via + " from " + import.meta.resolve("tiny-pkg"));
                    """)
                #expect(imported.termination == .exited(0), "stderr: \(imported.stderrText)")
                #expect(imported.stdoutText == "HI! via import from file:///workspace/node_modules/tiny-pkg/index.mjs\n")

                // The mount is read-only: the guest cannot change the package.
                let write = try await runtime.exec(
                    """
                    try { require("fs").writeFileSync("/workspace/node_modules/tiny-pkg/index.js", "x"); console.log("written"); }
                    catch (error) { console.log(error.code); }
                    """)
                #expect(write.stdoutText == "EROFS\n", "stderr: \(write.stderrText)")
            }
            #expect(
                HostFiles.read(package + "/index.js")
                    == #"module.exports = { shout: (text) => text.toUpperCase() + "!", via: "require" };"#)
        }
    }
}
