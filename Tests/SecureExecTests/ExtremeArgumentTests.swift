import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The public API called with the ends of every size, count and duration
/// it takes: each is a typed `.invalidArgument` before anything is sent, or
/// works (a huge size or timeout means practically unlimited); none traps
/// (README, "Limits and their defaults"). The rules alone are checked
/// without root by `ArgumentRangeTests`.
@Suite("Extreme argument values: the API", .needsRoot, .timeLimit(.minutes(2)))
struct ExtremeArgumentTests {
    /// A guest server answering every request with its URL.
    static let echoServer = """
        require("node:http").createServer((req, res) => res.end("seen " + req.url)).listen(3000, "127.0.0.1");
        """

    /// This process's hard RLIMIT_NOFILE: the most open files a guest can be given.
    static var hardOpenFiles: Int {
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        return Int(min(UInt64(limit.rlim_max), UInt64(Int.max)))
    }

    @Test("create takes the largest value of every limit and the runtime works")
    func largestLimits() async throws {
        let limits = Limits(
            memoryBytes: .max, maxProcesses: 4_194_304, cpuTimePerProcess: .seconds(Int64.max),
            openFilesPerProcess: Self.hardOpenFiles, workspaceBytes: .max, tmpBytes: .max, outputBytesPerStream: .max,
            terminationGrace: .seconds(Int64.max), inotifyInstances: 1 << 20, inotifyWatches: 1 << 24,
            fileOperationTimeout: .seconds(Int64.max))
        try await withRuntime(limits: limits) { runtime in
            let result = try await runtime.exec(
                #"const fs = require("node:fs"); fs.writeFileSync("/tmp/t", "tmp"); console.log(fs.readFileSync("/tmp/t", "utf8"))"#,
                timeout: .seconds(Int64.max))
            #expect(result.termination == .exited(0), "stderr: \(result.stderrText)")
            #expect(result.stdoutText == "tmp\n")
            try await runtime.writeFile("/workspace/a.txt", text: "written")
            #expect(try await runtime.readTextFile("/workspace/a.txt", maxBytes: .max) == "written")
        }
    }

    @Test("create refuses each limit out of range with .invalidArgument")
    func refusedLimits() async throws {
        for limits in [
            Limits(workspaceBytes: .min), Limits(tmpBytes: -1), Limits(memoryBytes: .min), Limits(maxProcesses: .max),
            Limits(maxProcesses: .min), Limits(cpuTimePerProcess: .seconds(Int64.min)), Limits(openFilesPerProcess: .max),
            Limits(openFilesPerProcess: Self.hardOpenFiles + 1), Limits(outputBytesPerStream: .min),
            Limits(terminationGrace: .seconds(Int64.min)), Limits(inotifyInstances: .max), Limits(inotifyWatches: .min),
            Limits(fileOperationTimeout: .seconds(Int64.min)),
        ] {
            await expectError(.invalidArgument, "\(limits)") { try await NodeRuntime.create(limits: limits) }
        }
    }

    @Test("readFile: maxBytes Int.max reads the whole file; a negative one is .invalidArgument, not an empty result")
    func readFileMaxBytes() async throws {
        try await withRuntime { runtime in
            try await runtime.writeFile("/workspace/f.txt", text: "twelve bytes")
            try await runtime.writeFile("/workspace/empty", [])
            #expect(try await runtime.readTextFile("/workspace/f.txt", maxBytes: .max) == "twelve bytes")
            #expect(try await runtime.readFile("/workspace/f.txt", maxBytes: .max).count == 12)
            #expect(try await runtime.readFile("/workspace/f.txt", maxBytes: 12).count == 12)
            #expect(try await runtime.readFile("/workspace/empty", maxBytes: 0) == [])
            await expectError(.responseTooLarge) { try await runtime.readFile("/workspace/f.txt", maxBytes: 11) }
            await expectError(.responseTooLarge) { try await runtime.readFile("/workspace/f.txt", maxBytes: 0) }
            for maxBytes in [-1, Int.min] {
                await expectError(.invalidArgument, mentioning: "maxBytes", "readFile maxBytes \(maxBytes)") {
                    try await runtime.readFile("/workspace/f.txt", maxBytes: maxBytes)
                }
                await expectError(.invalidArgument, mentioning: "maxBytes", "readTextFile maxBytes \(maxBytes)") {
                    try await runtime.readTextFile("/workspace/f.txt", maxBytes: maxBytes)
                }
            }
        }
    }

    @Test("exec, spawn and run: the largest timeout is no timeout, a sub-second one is honoured, none at all is refused")
    func processTimeouts() async throws {
        try await withRuntime { runtime in
            let largest = Duration(secondsComponent: Int64.max, attosecondsComponent: 999_999_999_999_999_999)
            let result = try await runtime.exec("console.log('ran')", timeout: largest)
            #expect(result.termination == .exited(0), "stderr: \(result.stderrText)")
            #expect(try await runtime.run("__return(42)", as: Int.self, timeout: .seconds(Int64.max)) == 42)
            let spawned = try await runtime.spawn("setInterval(() => {}, 1000)", timeout: largest)
            spawned.kill(.kill)
            #expect(try await spawned.wait() == .signaled(.kill))

            // Not cut to zero (which would be no timeout) nor rounded to a second.
            let short = try await runtime.exec("setInterval(() => {}, 1000)", timeout: .milliseconds(300))
            #expect(short.termination == .timedOut)

            for timeout in [Duration.zero, .nanoseconds(-1), .seconds(Int64.min)] {
                await expectError(.invalidArgument, "exec timeout \(timeout)") { try await runtime.exec("0", timeout: timeout) }
                await expectError(.invalidArgument, "spawn timeout \(timeout)") { try await runtime.spawn("0", timeout: timeout) }
                await expectError(.invalidArgument, "run timeout \(timeout)") {
                    try await runtime.run("__return(1)", as: Int.self, timeout: timeout)
                }
            }
        }
    }

    @Test("spawnCommand, execCommand and spawnExecutable: the largest timeout is no timeout, none at all is refused")
    func commandTimeouts() async throws {
        try await withRuntime(permissions: Permissions(childProcess: .allow)) { runtime in
            let largest = Duration(secondsComponent: Int64.max, attosecondsComponent: 999_999_999_999_999_999)
            let result = try await runtime.execCommand("echo ran", timeout: largest)
            #expect(result.termination == .exited(0), "stderr: \(result.stderrText)")
            #expect(result.stdoutText == "ran\n")
            let command = try await runtime.spawnCommand("exec sleep 30", timeout: largest)
            command.kill(.kill)
            #expect(try await command.wait() == .signaled(.kill))
            let program = try await runtime.spawnExecutable("/bin/sleep", arguments: ["30"], timeout: largest)
            program.kill(.kill)
            #expect(try await program.wait() == .signaled(.kill))

            for timeout in [Duration.zero, .nanoseconds(-1), .seconds(Int64.min)] {
                await expectError(.invalidArgument, "execCommand timeout \(timeout)") {
                    try await runtime.execCommand("true", timeout: timeout)
                }
                await expectError(.invalidArgument, "spawnCommand timeout \(timeout)") {
                    try await runtime.spawnCommand("true", timeout: timeout)
                }
                await expectError(.invalidArgument, "spawnExecutable timeout \(timeout)") {
                    try await runtime.spawnExecutable("/bin/true", timeout: timeout)
                }
            }
        }
    }

    @Test("fetch, fetchStreaming, waitForListener, findListener and expose at the ends of their ranges")
    func networkExtremes() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let server = try await runtime.startGuest(Self.echoServer)
            try await runtime.waitForListener(port: 3000, timeout: .seconds(Int64.max), process: server.process)
            #expect(try runtime.findListener(port: 3000))

            let response = try await runtime.fetch(
                3000, path: "/max", connectTimeout: .seconds(Int64.max), timeout: .seconds(Int64.max), maxBodyBytes: .max)
            #expect(response.bodyText == "seen /max")
            let uploaded = try await runtime.fetch(
                3000, path: "/up", method: "POST", bodyStream: AsyncStream { $0.yield([1]); $0.finish() },
                connectTimeout: .seconds(Int64.max), timeout: .seconds(Int64.max), maxBodyBytes: .max)
            #expect(uploaded.bodyText == "seen /up")
            let streamed = try await runtime.fetchStreaming(
                3000, path: "/stream", connectTimeout: .seconds(Int64.max), timeout: .seconds(Int64.max)
            ) { response in
                var body: [UInt8] = []
                for try await chunk in response.body { body += chunk }
                return String(decoding: body, as: UTF8.self)
            }
            #expect(streamed == "seen /stream")
            await expectError(.responseTooLarge) { try await runtime.fetch(3000, maxBodyBytes: 0) }

            for maxBodyBytes in [-1, Int.min] {
                await expectError(.invalidArgument, mentioning: "maxBodyBytes", "fetch maxBodyBytes \(maxBodyBytes)") {
                    try await runtime.fetch(3000, maxBodyBytes: maxBodyBytes)
                }
                await expectError(.invalidArgument, mentioning: "maxBodyBytes", "streamed upload maxBodyBytes \(maxBodyBytes)") {
                    try await runtime.fetch(
                        3000, method: "POST", bodyStream: AsyncStream<[UInt8]> { $0.finish() }, maxBodyBytes: maxBodyBytes)
                }
            }
            for port in [Int.min, -1, 0, 65536, Int.max] {
                await expectError(.invalidArgument, "fetch port \(port)") { try await runtime.fetch(port) }
                await expectError(.invalidArgument, "waitForListener port \(port)") {
                    try await runtime.waitForListener(port: port, timeout: .seconds(1))
                }
                await expectError(.invalidArgument, "findListener port \(port)") { try runtime.findListener(port: port) }
                await expectError(.invalidArgument, "expose guest port \(port)") { try await runtime.expose(port) }
            }
            for port in [Int.min, -1, 65536, Int.max] {
                await expectError(.invalidArgument, "expose host port \(port)") { try await runtime.expose(3000, port: port) }
            }
            for timeout in [Duration.zero, .seconds(Int64.min)] {
                await expectError(.invalidArgument, "fetch timeout \(timeout)") { try await runtime.fetch(3000, timeout: timeout) }
                await expectError(.invalidArgument, "fetch connectTimeout \(timeout)") {
                    try await runtime.fetch(3000, connectTimeout: timeout)
                }
                await expectError(.invalidArgument, "waitForListener timeout \(timeout)") {
                    try await runtime.waitForListener(port: 3000, timeout: timeout)
                }
                await expectError(.invalidArgument, "expose connectTimeout \(timeout)") {
                    try await runtime.expose(3000, connectTimeout: timeout)
                }
            }

            let exposed = try await runtime.expose(3000, connectTimeout: .seconds(Int64.max))
            let client = try await HostSocket.connect(port: exposed.port)
            try await client.send("GET /exposed HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            let answer = String(decoding: try await client.receive(through: "seen /exposed"), as: UTF8.self)
            #expect(answer.hasPrefix("HTTP/1.1 200"))
            await exposed.close()
            server.process.kill()
            _ = try await server.process.wait()
        }
    }
}
