// The seed's dev-server scenario, end to end: a user's node:http server boots
// inside a fresh sandbox, the host drives two requests into it through the
// kernel, then stops it and disposes the sandbox.
import Foundation
import SecureExec

let devServer = """
    import http from "node:http";
    // Start the user's server, exactly as they wrote it.
    const app = http.createServer((req, res) => {
      if (req.url === "/health") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ ok: true }));
        return;
      }
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("hello from the sandboxed dev server");
    });
    // Listen on loopback inside the sandbox. The kernel owns this socket; it
    // never touches a real host port.
    app.listen(3000, "127.0.0.1", () => {
      console.log("server listening on 127.0.0.1:3000");
    });
    """

/// JSON string quoting, as the seed's `JSON.stringify` prints bodies.
func quoted(_ text: String) -> String {
    let data = try! JSONSerialization.data(withJSONObject: text, options: [.fragmentsAllowed, .withoutEscapingSlashes])
    return String(decoding: data, as: UTF8.self)
}

func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

do {
    // The guest binds a loopback port, so opt in to networking; everything
    // else stays denied.
    try await withNodeRuntime(permissions: .init(network: .allow)) { runtime in
        let server = try await runtime.spawn(devServer, onStdout: { chunk in
            FileHandle.standardOutput.write(Data(chunk))
        })
        say("spawned guest server, pid: \(server.pid)")
        do {
            try await runtime.waitForListener(port: 3000, process: server)
            let health = try await runtime.fetch(3000, path: "/health")
            say("health check -> \(health.status) \(quoted(health.bodyText))")
            let response = try await runtime.fetch(3000, path: "/", method: "GET")
            say("GET / -> \(response.status) \(quoted(response.bodyText))")
            // Key order as the seed prints it: status, then body.
            say("RESULT {\"status\":\(response.status),\"body\":\(quoted(response.bodyText))}")
        } catch {
            server.kill()
            try await server.wait()
            throw error
        }
        server.kill()
        try await server.wait()
        say("server stopped")
    }
} catch {
    FileHandle.standardError.write(Data("dev-server example failed: \(error)\n".utf8))
    exit(1)
}
