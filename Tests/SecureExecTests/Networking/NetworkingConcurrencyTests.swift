import SecureExec
import TestSupport
import Testing

/// Many fetches at once against one guest, and many sandboxes at once, each
/// answering for itself: the keep-alive pool (at most 64 connections per
/// port, the rest queued) must hand every caller its own answer.
@Suite("Networking: concurrency", .needsRoot, .timeLimit(.minutes(2)))
struct NetworkingConcurrencyTests {
    @Test("1,000 concurrent fetches against one guest server are each answered with their own index")
    func thousandConcurrentFetches() async throws {
        try await withMeasuredNetworkRuntime { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            let answers = try await withThrowingTaskGroup(of: (Int, Int, String).self) { group in
                for index in 0..<1000 {
                    group.addTask {
                        let response = try await runtime.fetch(3000, path: "/echo/\(index)")
                        return (index, response.status, response.bodyText)
                    }
                }
                var answers: [Int: (status: Int, body: String)] = [:]
                for try await (index, status, body) in group { answers[index] = (status, body) }
                return answers
            }

            #expect(answers.count == 1000)
            let wrong = (0..<1000).filter { answers[$0]?.status != 200 || answers[$0]?.body != "\($0)" }
            #expect(wrong.isEmpty, "wrong answers for \(wrong.count) requests, first: \(wrong.prefix(5).map { ($0, answers[$0].map { "\($0.status) \($0.body)" } ?? "none") })")
            // The pool never opens more than 64 connections to one port, however many callers queue.
            let connections = try await runtime.fetch(3000, path: "/connections")
            #expect((1...64).contains(Int(connections.bodyText) ?? -1), "the guest saw \(connections.bodyText) connections")
        }
    }

    @Test("20 runtimes created in parallel each answer their own id to 10 parallel fetches")
    func twentyRuntimesInParallel() async throws {
        let results = try await measuredExclusively {
            try await withThrowingTaskGroup(of: (Int, [String]).self) { group in
                for id in 0..<20 {
                    group.addTask {
                        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
                            // Every sandbox listens on the same port 3000: each has a loopback of its own.
                            let server = """
                                require("http").createServer((req, res) => res.end("runtime \(id)"))
                                  .listen(3000, "127.0.0.1");
                                """
                            _ = try await runtime.startServer(server, port: 3000)
                            let bodies = try await withThrowingTaskGroup(of: String.self) { fetches in
                                for _ in 0..<10 { fetches.addTask { try await runtime.fetch(3000).bodyText } }
                                return try await fetches.reduce(into: []) { $0.append($1) }
                            }
                            return (id, bodies)
                        }
                    }
                }
                return try await group.reduce(into: [Int: [String]]()) { $0[$1.0] = $1.1 }
            }
        }

        #expect(results.count == 20)
        for id in 0..<20 {
            #expect(results[id] == Array(repeating: "runtime \(id)", count: 10), "runtime \(id) answered \(results[id] ?? [])")
        }
    }

    @Test("200 sequential small fetches all succeed on a kept-alive connection")
    func sequentialFetches() async throws {
        try await withMeasuredNetworkRuntime { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            _ = try await runtime.fetch(3000, path: "/echo/warm-up")
            var wrong: [Int] = []
            for index in 0..<200 {
                let response = try await runtime.fetch(3000, path: "/echo/\(index)")
                if response.status != 200 || response.bodyText != "\(index)" { wrong.append(index) }
            }

            #expect(wrong.isEmpty, "wrong answers for requests \(wrong.prefix(10))")
            // One connection could serve them all; the pool may open a second
            // when a caller is back before the previous connection was checked in.
            let connections = try await runtime.fetch(3000, path: "/connections")
            #expect(["1", "2"].contains(connections.bodyText), "202 sequential fetches used \(connections.bodyText) connections")
        }
    }
}
