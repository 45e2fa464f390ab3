import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `expose` opens a real host listener piped to a guest port, so ordinary
/// clients (here: plain sockets, speaking HTTP and WebSocket by hand) reach
/// the dev server; closing it, or disposing the runtime, frees the host port.
@Suite("Networking: expose", .needsRoot, .timeLimit(.minutes(2)))
struct NetworkingExposeTests {
    @Test("expose(3000) listens on 127.0.0.1 at a kernel-chosen port and a host client gets pages")
    func pages() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            let exposed = try await runtime.expose(3000)

            #expect(exposed.host == "127.0.0.1")
            #expect(exposed.port > 0)
            #expect(exposed.guestPort == 3000)
            #expect(exposed.url == "http://127.0.0.1:\(exposed.port)/")
            for path in ["first", "second"] {
                let client = try await HostSocket.connect(port: exposed.port)
                defer { client.close() }
                let (response, body) = try await client.get("/echo/\(path)")
                #expect(response.status == 200)
                #expect(String(decoding: body, as: UTF8.self) == path)
            }
            let client = try await HostSocket.connect(port: exposed.port)
            defer { client.close() }
            let (response, body) = try await client.get("/hello")
            #expect(response.header("content-length") == "11")
            #expect(String(decoding: body, as: UTF8.self) == "hello world")
        }
    }

    @Test("expose on ::1 gives a bracketed URL and serves pages")
    func ipv6Host() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            let exposed = try await runtime.expose(3000, host: "::1")

            #expect(exposed.host == "::1")
            #expect(exposed.url == "http://[::1]:\(exposed.port)/")
            let client = try await HostSocket.connect(host: "::1", port: exposed.port)
            defer { client.close() }
            let (response, body) = try await client.get("/echo/v6")
            #expect(response.status == 200)
            #expect(String(decoding: body, as: UTF8.self) == "v6")
        }
    }

    @Test("a WebSocket upgrade passes through: handshake, three echoed messages, closes both ways")
    func webSocket() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let server = try await runtime.startServer(NetworkingGuests.webSocketEcho, port: 3000)
            let exposed = try await runtime.expose(3000)

            // First connection: three messages (7-bit, 16-bit and 64-bit lengths), then the client closes.
            let client = try await HostSocket.connect(port: exposed.port)
            defer { client.close() }
            try await Self.handshake(client)
            let messages = ["hello 1", String(repeating: "medium ", count: 43), String(repeating: "0123456789", count: 7000)]
            for message in messages {
                try await client.send(WebSocketFrame(opcode: WebSocketFrame.text, payload: Array(message.utf8)).encodedMasked())
                let echo = try await WebSocketFrame.read(from: client)
                #expect(echo.opcode == WebSocketFrame.text)
                #expect(echo.payload.count == message.utf8.count)
                #expect(String(decoding: echo.payload, as: UTF8.self) == message)
            }
            client.close()
            try await server.stdout.waitUntilContains("ws 1 close")
            #expect(server.stdout.lines.filter { $0.hasPrefix("ws 1 ") } == [
                "ws 1 open", "ws 1 message 7", "ws 1 message 301", "ws 1 message 70000", "ws 1 end", "ws 1 close",
            ])

            // Second connection: "bye" makes the guest end its socket; the host reads the echo, then end of stream.
            let second = try await HostSocket.connect(port: exposed.port)
            defer { second.close() }
            try await Self.handshake(second)
            try await second.send(WebSocketFrame(opcode: WebSocketFrame.text, payload: Array("bye".utf8)).encodedMasked())
            #expect(try await WebSocketFrame.read(from: second) == WebSocketFrame(opcode: WebSocketFrame.text, payload: Array("bye".utf8)))
            #expect(try await second.receiveSome() == [], "the guest's end did not reach the host client")
            second.close()
            try await server.stdout.waitUntilContains("ws 2 close")
        }
    }

    /// Sends the RFC 6455 sample handshake and checks the guest's answer.
    private static func handshake(_ client: HostSocket) async throws {
        try await client.send(
            "GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        let response = try RawHTTPResponse(head: try await client.receive(through: "\r\n\r\n"))
        #expect(response.status == 101)
        #expect(response.header("upgrade")?.lowercased() == "websocket")
        // The accept value RFC 6455 section 1.3 gives for this key.
        #expect(response.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test("server-sent events through expose reach the host client as they are sent")
    func serverSentEvents() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            let exposed = try await runtime.expose(3000)
            let client = try await HostSocket.connect(port: exposed.port)
            defer { client.close() }
            // The guest sends each next event only after the host acknowledged the
            // previous one (a fetch of /ack): if expose held the stream back, the
            // first event would never reach the client and the read would time out.
            try await client.send("GET /events-acked HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")

            var text = ""
            var acks: [String] = []
            while true {
                let chunk = try await client.receiveSome()
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
                let seen = (1...5).filter { text.contains("data: event \($0)\n\n") }.count
                if seen > acks.count && seen < 5 {
                    acks.append(try await runtime.fetch(3000, path: "/ack").bodyText)
                }
            }

            #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"))
            #expect(text.lowercased().contains("content-type: text/event-stream"))
            for event in 1...5 {
                #expect(text.contains("data: event \(event)\n\n"), "event \(event) never arrived: \(text.debugDescription)")
            }
            #expect(acks == Array(repeating: "acked", count: 4))
        }
    }

    @Test("close() stops listening, ends piped connections and frees the host port")
    func closeFreesPort() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            let exposed = try await runtime.expose(3000)
            let port = exposed.port
            let held = try await Self.openKeptAliveConnection(port: port)
            defer { held.close() }
            #expect(!HostPorts.canListen(host: "127.0.0.1", port: port), "the exposed port should be taken")

            await exposed.close()
            await exposed.close()  // idempotent

            #expect(try await Self.endOfStream(held), "the piped connection survived close()")
            #expect(HostPorts.canListen(host: "127.0.0.1", port: port), "port \(port) is still taken after close()")
            #expect(try await runtime.fetch(3000, path: "/echo/still-serving").bodyText == "still-serving")
        }
    }

    @Test("dispose() ends piped connections and frees the host port")
    func disposeFreesPort() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            let exposed = try await runtime.expose(3000)
            let port = exposed.port
            let held = try await Self.openKeptAliveConnection(port: port)
            defer { held.close() }

            await runtime.dispose()

            #expect(try await Self.endOfStream(held), "the piped connection survived dispose()")
            #expect(HostPorts.canListen(host: "127.0.0.1", port: port), "port \(port) is still taken after dispose()")
            let error = await #expect(throws: SecureExecError.self) { try await runtime.expose(3000) }
            #expect(error?.code == .disposed)
        }
    }

    @Test("a connection to an exposed port nobody listens on in the guest is closed, not left hanging")
    func nothingListening() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let exposed = try await runtime.expose(3999)
            let client = try await HostSocket.connect(port: exposed.port)
            defer { client.close() }
            try await client.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")

            #expect(try await Self.endOfStream(client))
        }
    }

    /// Connects through `port`, completes one keep-alive request and returns the still-open connection.
    private static func openKeptAliveConnection(port: Int) async throws -> HostSocket {
        let client = try await HostSocket.connect(port: port)
        try await client.send("GET /echo/held HTTP/1.1\r\nHost: localhost\r\n\r\n")
        let response = try RawHTTPResponse(head: try await client.receive(through: "\r\n\r\n"))
        #expect(response.status == 200)
        #expect(try await client.receive(exactly: 4) == Array("held".utf8))
        return client
    }

    /// True when the peer has closed `client` (end of stream or a reset); false if data arrives instead.
    private static func endOfStream(_ client: HostSocket) async throws -> Bool {
        do {
            return try await client.receiveSome().isEmpty
        } catch let failure as HostCallError where failure.errno == ECONNRESET {
            return true
        }
    }
}
