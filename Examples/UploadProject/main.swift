// Uploading a project: files from the platform, a node_modules tree the host
// already has (mounted read-only), the entry started with spawnFile, then
// reached with fetch once it listens.
import Foundation
import SecureExec

// A node_modules the platform already installed on the host (here: made on the spot).
let modules = FileManager.default.temporaryDirectory.appendingPathComponent("upload-example-\(getpid())/node_modules")
try FileManager.default.createDirectory(at: modules.appendingPathComponent("greeting"), withIntermediateDirectories: true)
try #"module.exports = (name) => `hello, ${name}`;"#.write(
    to: modules.appendingPathComponent("greeting/index.js"), atomically: true, encoding: .utf8)
defer { try? FileManager.default.removeItem(at: modules.deletingLastPathComponent()) }

let project: [String: [UInt8]] = [
    "/workspace/package.json": Array(#"{ "name": "demo", "main": "server.js" }"#.utf8),
    "/workspace/config.json": Array(#"{ "who": "sandbox" }"#.utf8),
    "/workspace/server.js": Array("""
        const http = require("node:http");
        const greet = require("greeting");
        const { who } = require("./config.json");
        http.createServer((req, res) => res.end(greet(who)))
          .listen(8080, "127.0.0.1", () => console.log("ready"));
        """.utf8),
]

try await withNodeRuntime(
    permissions: .init(network: .allow), files: project, nodeModules: modules.path
) { runtime in
    let server = try await runtime.spawnFile("/workspace/server.js")
    try await runtime.waitForListener(port: 8080, process: server)
    let page = try await runtime.fetch(8080, path: "/")
    print(page.status, page.bodyText)  // 200 hello, sandbox
    server.kill()
    try await server.wait()
}
