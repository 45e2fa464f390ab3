import Foundation
import NIOPosix
import Testing

@testable import Supervisor

#if canImport(Glibc)
import Glibc
#endif

/// A node server on 127.0.0.1, started per test; `mode` picks its behaviour. It prints its port, then
/// "closed" whenever a client connection goes away, so tests can see that `perform` closed the socket.
private final class NodeServer {
    static let script = #"""
        const http = require('http'), net = require('net');
        const mode = process.env.MODE;
        const watch = (sock) => sock.on('close', () => console.log('closed'));
        let server;
        if (mode === 'http') {
          server = http.createServer((req, res) => {
            const parts = [];
            req.on('data', (c) => parts.push(c));
            req.on('end', () => {
              const body = Buffer.concat(parts);
              switch (req.url) {
                case '/json': res.setHeader('content-type', 'application/json'); res.end(JSON.stringify({ok: true, n: 42})); break;
                case '/echo': res.setHeader('content-type', 'application/octet-stream'); res.end(body); break;
                case '/chunked': res.write('alpha,'); setTimeout(() => { res.write('beta,'); res.end('gamma'); }, 20); break;
                case '/nocontent': res.statusCode = 204; res.end(); break;
                case '/cookies': res.setHeader('set-cookie', ['a=1', 'b=2', 'c=3']); res.end('ok'); break;
                case '/headers': res.end(JSON.stringify({raw: req.rawHeaders, bodyLength: body.length})); break;
                default: res.statusCode = 404; res.end('not found');
              }
            });
          });
          server.on('connection', watch);
        } else {
          server = net.createServer((sock) => {
            watch(sock);
            sock.on('error', () => {});
            sock.once('data', () => {
              if (mode === 'garbage') sock.end('garbage\r\n\r\n');
              if (mode === 'hangup') sock.end();
              if (mode === 'truncated') sock.end('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly-part-of-it');
              // 'silent': read the request, never answer.
            });
          });
        }
        server.listen(0, '127.0.0.1', () => console.log(server.address().port));
        """#

    let process = Process()
    let stdout = Pipe()
    private(set) var port: UInt16 = 0

    init(mode: String) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["node", "-e", Self.script]
        process.environment = ["MODE": mode, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        process.standardOutput = stdout
        try process.run()
        guard let line = readLine(timeout: 10), let port = UInt16(line) else {
            stop()
            throw SecureExecError(.ioFailed, "node server did not print its port")
        }
        self.port = port
    }

    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    /// Next stdout line, or nil if none arrives within `timeout` seconds.
    func readLine(timeout: Double) -> String? {
        let fd = stdout.fileHandleForReading.fileDescriptor
        let deadline = Date().addingTimeInterval(timeout)
        var line: [UInt8] = []
        while true {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let remaining = Int32(max(0, deadline.timeIntervalSinceNow) * 1000)
            guard poll(&pfd, 1, remaining) > 0 else { return nil }
            var byte: UInt8 = 0
            guard read(fd, &byte, 1) == 1 else { return nil }
            if byte == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
    }
}

/// A blocking connect to 127.0.0.1:port, then made non-blocking like the namespace dialer's fds.
private func connectSocket(port: UInt16) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw SecureExecError(.ioFailed, "socket", errno: errno) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else {
        let code = errno
        close(fd)
        throw SecureExecError(.connectionFailed, "connect", errno: code)
    }
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    return fd
}

private func exchange(
    _ server: NodeServer, _ request: HTTPRequestSpec, timeout: Duration = .seconds(10), maxBodyBytes: Int = 1 << 20
) async throws -> HTTPResponseParts {
    try await HTTPExchange.perform(
        fd: try connectSocket(port: server.port), request: request, hostHeader: "guest.test", timeout: timeout,
        maxBodyBytes: maxBodyBytes, group: MultiThreadedEventLoopGroup.singleton)
}

/// The SecureExecError `body` throws (nil if it threw nothing or something else).
private func thrownError(_ body: () async throws -> Void) async -> SecureExecError? {
    do {
        try await body()
        return nil
    } catch {
        return error as? SecureExecError
    }
}

private func header(_ response: HTTPResponseParts, _ name: String) -> [String] {
    response.headers.filter { $0.0.lowercased() == name }.map(\.1)
}

@Suite("HTTP exchange over an adopted socket", .timeLimit(.minutes(1)))
struct HTTPExchangeTests {
    @Test func getReturnsJSONBody() async throws {
        let server = try NodeServer(mode: "http")
        defer { server.stop() }
        let response = try await exchange(server, HTTPRequestSpec(path: "/json"))
        #expect(response.status == 200)
        #expect(response.reason == "OK")
        #expect(header(response, "content-type") == ["application/json"])
        #expect(String(decoding: response.body, as: UTF8.self) == #"{"ok":true,"n":42}"#)
        #expect(server.readLine(timeout: 5) == "closed")
    }

    @Test func postEchoesBinaryBodyByteForByte() async throws {
        let server = try NodeServer(mode: "http")
        defer { server.stop() }
        let payload: [UInt8] = [0x00, 0xFF, 0x0D, 0x0A, 0x80, 0x00] + (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let response = try await exchange(server, HTTPRequestSpec(method: "POST", path: "/echo", body: payload))
        #expect(response.status == 200)
        #expect(response.body == payload)
    }

    @Test func sendsHostContentLengthAndConnectionClose() async throws {
        let server = try NodeServer(mode: "http")
        defer { server.stop() }
        let response = try await exchange(
            server, HTTPRequestSpec(method: "POST", path: "/headers", headers: [("X-Test", "1"), ("Connection", "keep-alive")]))
        let echoed = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        let raw = (echoed?["raw"] as? [String]) ?? []
        let pairs = stride(from: 0, to: raw.count - 1, by: 2).map { (raw[$0].lowercased(), raw[$0 + 1]) }
        #expect(pairs.filter { $0.0 == "host" }.map(\.1) == ["guest.test"])
        #expect(pairs.filter { $0.0 == "content-length" }.map(\.1) == ["0"])
        #expect(pairs.filter { $0.0 == "connection" }.map(\.1) == ["close"])
        #expect(pairs.filter { $0.0 == "x-test" }.map(\.1) == ["1"])
        #expect(pairs.allSatisfy { $0.0 != "transfer-encoding" })
    }

    @Test func callerHostHeaderWins() async throws {
        let server = try NodeServer(mode: "http")
        defer { server.stop() }
        let response = try await exchange(server, HTTPRequestSpec(path: "/headers", headers: [("host", "custom:1")]))
        let raw = (try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])?["raw"] as? [String]
        #expect(raw?.contains("custom:1") == true)
        #expect(raw?.contains("guest.test") == false)
    }

    @Test func chunkedResponseIsReassembled() async throws {
        let server = try NodeServer(mode: "http")
        defer { server.stop() }
        let response = try await exchange(server, HTTPRequestSpec(path: "/chunked"))
        #expect(header(response, "transfer-encoding") == ["chunked"])
        #expect(String(decoding: response.body, as: UTF8.self) == "alpha,beta,gamma")
    }

    @Test func headHasEmptyBody() async throws {
        let server = try NodeServer(mode: "http")
        defer { server.stop() }
        let response = try await exchange(server, HTTPRequestSpec(method: "HEAD", path: "/json"))
        #expect(response.status == 200)
        #expect(header(response, "content-type") == ["application/json"])
        #expect(response.body.isEmpty)
    }

    @Test func noContentHasEmptyBody() async throws {
        let server = try NodeServer(mode: "http")
        defer { server.stop() }
        let response = try await exchange(server, HTTPRequestSpec(path: "/nocontent"))
        #expect(response.status == 204)
        #expect(response.body.isEmpty)
    }

    @Test func repeatedSetCookieHeadersKeptInOrder() async throws {
        let server = try NodeServer(mode: "http")
        defer { server.stop() }
        let response = try await exchange(server, HTTPRequestSpec(path: "/cookies"))
        #expect(header(response, "set-cookie") == ["a=1", "b=2", "c=3"])
    }

    @Test func bodyOverTheCapIsRejected() async throws {
        let server = try NodeServer(mode: "http")
        defer { server.stop() }
        let error = await thrownError { _ = try await exchange(server, HTTPRequestSpec(path: "/json"), maxBodyBytes: 4) }
        #expect(error?.code == .responseTooLarge)
    }

    @Test func silentServerTimesOutAndConnectionIsClosed() async throws {
        let server = try NodeServer(mode: "silent")
        defer { server.stop() }
        let start = ContinuousClock.now
        let error = await thrownError { _ = try await exchange(server, HTTPRequestSpec(), timeout: .milliseconds(300)) }
        let elapsed = ContinuousClock.now - start
        #expect(error?.code == .timeout)
        #expect(elapsed >= .milliseconds(250) && elapsed < .seconds(5))
        #expect(server.readLine(timeout: 5) == "closed")
    }

    @Test func cancellationClosesTheConnection() async throws {
        let server = try NodeServer(mode: "silent")
        defer { server.stop() }
        let fd = try connectSocket(port: server.port)
        let task = Task {
            try await HTTPExchange.perform(
                fd: fd, request: HTTPRequestSpec(), hostHeader: "guest.test", timeout: .seconds(30),
                maxBodyBytes: 1024, group: MultiThreadedEventLoopGroup.singleton)
        }
        try await Task.sleep(for: .milliseconds(200))
        task.cancel()
        let error = await thrownError { _ = try await task.value }
        #expect(error?.code == .cancelled)
        #expect(server.readLine(timeout: 5) == "closed")
    }

    @Test func garbageIsAProtocolError() async throws {
        let server = try NodeServer(mode: "garbage")
        defer { server.stop() }
        let error = await thrownError { _ = try await exchange(server, HTTPRequestSpec()) }
        #expect(error?.code == .protocolError)
    }

    @Test func closeMidBodyIsAProtocolError() async throws {
        let server = try NodeServer(mode: "truncated")
        defer { server.stop() }
        let error = await thrownError { _ = try await exchange(server, HTTPRequestSpec()) }
        #expect(error?.code == .protocolError)
    }

    @Test func closeBeforeAnyResponseIsAProtocolError() async throws {
        let server = try NodeServer(mode: "hangup")
        defer { server.stop() }
        let error = await thrownError { _ = try await exchange(server, HTTPRequestSpec()) }
        #expect(error?.code == .protocolError)
    }

    @Test func invalidRequestIsRejectedAndFdStillClosed() async throws {
        let server = try NodeServer(mode: "silent")
        defer { server.stop() }
        let error = await thrownError { _ = try await exchange(server, HTTPRequestSpec(path: "/a\r\nX: y")) }
        #expect(error?.code == .invalidArgument)
        #expect(server.readLine(timeout: 5) == "closed")
    }

    @Test func nonSocketFdIsRejectedAndClosed() async throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[1]) }
        let error = await thrownError {
            _ = try await HTTPExchange.perform(
                fd: ends[0], request: HTTPRequestSpec(), hostHeader: "h", timeout: .seconds(5), maxBodyBytes: 1,
                group: MultiThreadedEventLoopGroup.singleton)
        }
        #expect(error?.code == .invalidArgument)
        // With its read end closed, the write end of a pipe reports POLLERR.
        var pfd = pollfd(fd: ends[1], events: Int16(POLLOUT), revents: 0)
        #expect(poll(&pfd, 1, 1000) == 1 && pfd.revents & Int16(POLLERR) != 0)
    }

    @Test(arguments: [
        HTTPRequestSpec(method: ""),
        HTTPRequestSpec(method: "GE T"),
        HTTPRequestSpec(path: ""),
        HTTPRequestSpec(path: "relative"),
        HTTPRequestSpec(path: "/a\rb"),
        HTTPRequestSpec(path: "/a\nb"),
        HTTPRequestSpec(path: "/a b"),
        HTTPRequestSpec(path: "/a\0b"),
        HTTPRequestSpec(headers: [("", "v")]),
        HTTPRequestSpec(headers: [("X-A\r\nX-B", "v")]),
        HTTPRequestSpec(headers: [("X-A\n", "v")]),
        HTTPRequestSpec(headers: [("X-A", "v\r\nX-Injected: 1")]),
        HTTPRequestSpec(headers: [("X-A", "v\nw")]),
        HTTPRequestSpec(headers: [("X-A", "v\0")]),
    ])
    func validateRejects(_ request: HTTPRequestSpec) {
        #expect(throws: SecureExecError.self) { try request.validate() }
        #expect((try? request.validate()) == nil)
    }

    @Test func validateAcceptsOrdinaryRequests() throws {
        try HTTPRequestSpec().validate()
        try HTTPRequestSpec(
            method: "PATCH", path: "/a/b?c=d%20e&f=%E2%9C%93", headers: [("X-Custom_1", "tab\tand unicode ✓"), ("Accept", "*/*")],
            body: [0, 1, 2]
        ).validate()
    }
}
