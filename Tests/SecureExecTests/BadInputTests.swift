import SecureExec
import TestSupport
import Testing

/// Bad input is rejected with a typed `.invalidArgument` error before
/// anything is sent (README, "The API": bad input): out-of-range ports,
/// CR or LF in a header or path (request smuggling), negative timeouts and
/// unknown signals never reach a guest.
@Suite("Bad input is rejected before sending", .needsRoot, .timeLimit(.minutes(1)))
struct BadInputTests {
    /// Answers every request with what it has seen so far: connections and "METHOD url" lines.
    static let requestLog = """
        const http = require("http");
        const requests = [];
        let connections = 0;
        const server = http.createServer((req, res) => {
          requests.push(req.method + " " + req.url);
          res.end(JSON.stringify({ connections, requests }));
        });
        server.on("connection", () => connections++);
        server.listen(3000, "127.0.0.1");
        """

    /// `fetch` calls that must each fail with `.invalidArgument`.
    static let badFetches: [(String, @Sendable (NodeRuntime) async throws -> Void)] = [
        ("port 0", { _ = try await $0.fetch(0) }),
        ("port 70000", { _ = try await $0.fetch(70000) }),
        ("port 65536", { _ = try await $0.fetch(65536) }),
        ("port -1", { _ = try await $0.fetch(-1) }),
        ("CR in a header name", { _ = try await $0.fetch(3000, headers: [HTTPHeader("X-Bad\r", "1")]) }),
        ("LF in a header name", { _ = try await $0.fetch(3000, headers: [HTTPHeader("X-Bad\n", "1")]) }),
        ("CR in a header value", { _ = try await $0.fetch(3000, headers: [HTTPHeader("X-Bad", "a\rb")]) }),
        ("LF in a header value", { _ = try await $0.fetch(3000, headers: [HTTPHeader("X-Bad", "a\nb")]) }),
        ("CRLF header injection in a value", {
            _ = try await $0.fetch(3000, headers: [HTTPHeader("X-Bad", "1\r\nX-Injected: 1")])
        }),
        ("CR in the path", { _ = try await $0.fetch(3000, path: "/a\rb") }),
        ("LF in the path", { _ = try await $0.fetch(3000, path: "/a\nb") }),
        ("CRLF request smuggling in the path", {
            _ = try await $0.fetch(3000, path: "/ HTTP/1.1\r\nHost: x\r\n\r\nGET /smuggled")
        }),
    ]

    @Test("fetch rejects bad ports, headers and paths and sends nothing")
    func badFetchesSendNothing() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let server = try await runtime.startGuest(Self.requestLog)
            try await runtime.waitForListener(port: 3000, process: server.process)

            for (name, call) in Self.badFetches {
                let error = await #expect(throws: SecureExecError.self, "\(name)") { try await call(runtime) }
                #expect(error?.code == .invalidArgument, "\(name): \(String(describing: error))")
            }

            let good = try await runtime.fetch(3000, path: "/good")
            #expect(good.status == 200)
            #expect(good.bodyText == #"{"connections":1,"requests":["GET /good"]}"#)
        }
    }

    @Test("waitForListener rejects a negative timeout and port 0")
    func badWaits() async throws {
        try await withRuntime { runtime in
            let negative = await #expect(throws: SecureExecError.self) {
                try await runtime.waitForListener(port: 3000, timeout: .seconds(-1))
            }
            #expect(negative?.code == .invalidArgument)
            let portZero = await #expect(throws: SecureExecError.self) {
                try await runtime.waitForListener(port: 0)
            }
            #expect(portZero?.code == .invalidArgument)
            let portTooLarge = await #expect(throws: SecureExecError.self) {
                try await runtime.waitForListener(port: 65536)
            }
            #expect(portTooLarge?.code == .invalidArgument)
        }
    }

    @Test("a timeout of Int64.max seconds means practically never, not a trap; a CPU limit of 1.5 s is not cut to 1 s")
    func hugeAndFractionalDurations() async throws {
        try await withRuntime(limits: Limits(cpuTimePerProcess: .milliseconds(1500))) { runtime in
            let result = try await runtime.exec(
                #"console.log(require("fs").readFileSync("/proc/self/limits", "utf8").split("\n").find(l => l.startsWith("Max cpu time")))"#,
                timeout: .seconds(Int64.max))
            #expect(result.termination == .exited(0), "stderr: \(result.stderrText)")
            // Rounded up to whole seconds (RLIMIT_CPU counts seconds): soft 2, hard 3.
            let fields = result.stdoutText.split(separator: " ", omittingEmptySubsequences: true)
            #expect(fields.contains("2") && fields.contains("3"), "\(result.stdoutText)")
            let process = try await runtime.spawn("setInterval(() => {}, 1000)", timeout: .seconds(Int64.max))
            process.kill(.kill)
            #expect(try await process.wait() == .signaled(.kill))
        }
    }
}
