import SecureExec
import TestSupport
import Testing

/// The shapes of HTTP/1.1 responses a dev server sends, read back through
/// `fetch` and `fetchStreaming`: chunked bodies, event streams, HEAD, 204,
/// repeated headers, and connections kept alive between requests.
@Suite("Networking: responses", .needsRoot, .timeLimit(.minutes(2)))
struct NetworkingResponseTests {
    @Test("a chunked response (several writes, no content-length) is reassembled whole")
    func chunkedBody() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            let response = try await runtime.fetch(3000, path: "/chunked")

            #expect(response.status == 200)
            #expect(response.header("transfer-encoding") == "chunked")
            #expect(response.header("content-length") == nil)
            #expect(response.bodyText == "alpha,beta,gamma,delta")
        }
    }

    @Test("server-sent events reach the host as they are sent, not at the end")
    func serverSentEventsStream() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            // The guest sends each next event only after the host acknowledged the
            // previous one with a second request: if fetchStreaming buffered the
            // body, the first event would never be handed over and this would time out.
            let (contentType, text, acks) = try await runtime.fetchStreaming(
                3000, path: "/events-acked", timeout: .seconds(20)
            ) { response in
                var text = ""
                var acks: [String] = []
                for try await chunk in response.body {
                    text += String(decoding: chunk, as: UTF8.self)
                    let seen = text.components(separatedBy: "\n\n").count - 1
                    if seen > acks.count && seen < 5 {
                        acks.append(try await runtime.fetch(3000, path: "/ack").bodyText)
                    }
                }
                return (response.header("content-type"), text, acks)
            }

            #expect(contentType == "text/event-stream")
            #expect(text == (1...5).map { "data: event \($0)\n\n" }.joined())
            #expect(acks == Array(repeating: "acked", count: 4))
        }
    }

    @Test("HEAD returns status 200, the content-length header and no body; the connection stays usable")
    func headRequest() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            let head = try await runtime.fetch(3000, path: "/hello", method: "HEAD")

            #expect(head.status == 200)
            #expect(head.header("content-length") == "11")
            #expect(head.body.isEmpty)
            // A client that waited for HEAD's 11 bytes would read the next response as that body.
            let get = try await runtime.fetch(3000, path: "/hello")
            #expect(get.status == 200)
            #expect(get.bodyText == "hello world")
        }
    }

    @Test("204 No Content has an empty body; the connection stays usable")
    func noContent() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            let response = try await runtime.fetch(3000, path: "/nocontent")

            #expect(response.status == 204)
            #expect(response.body.isEmpty)
            #expect(try await runtime.fetch(3000, path: "/echo/after").bodyText == "after")
        }
    }

    @Test("repeated set-cookie headers are kept, in order")
    func repeatedSetCookie() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            let response = try await runtime.fetch(3000, path: "/cookies")

            #expect(response.headerValues("set-cookie") == ["a=1", "b=2"])
            #expect(response.header("Set-Cookie") == "a=1")
            #expect(response.bodyText == "cookies")
        }
    }

    @Test("50 sequential fetches reuse kept-alive connections (the guest sees at most 2)")
    func keepAliveReuse() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            for index in 0..<50 {
                let response = try await runtime.fetch(3000, path: "/echo/\(index)")
                #expect(response.bodyText == "\(index)")
            }
            let connections = try await runtime.fetch(3000, path: "/connections")

            let count = try #require(Int(connections.bodyText))
            #expect((1...2).contains(count), "51 sequential fetches made \(count) connections")
        }
    }
}
