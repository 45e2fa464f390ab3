import SecureExec
import Synchronization
import TestSupport
import Testing

/// The keep-alive pool when it is full (64 connections to one port held
/// open): a queued fetch is served as soon as a held connection goes away,
/// and disposing ends every queued fetch with `.disposed` instead of leaving
/// it waiting.
@Suite("Networking: a full connection pool", .needsRoot, .timeLimit(.minutes(1)))
struct NetworkingPoolTests {
    /// `/hold` sends its head and never ends; anything else answers at once.
    static let server = """
        const http = require("node:http");
        http.createServer((req, res) => {
          if (req.url === "/hold") { res.writeHead(200); res.write("held"); return; }
          res.end("quick");
        }).listen(3000, "127.0.0.1");
        """

    /// Starts `count` streaming fetches of /hold and returns once each is inside its handler.
    static func holdConnections(_ count: Int, in runtime: NodeRuntime) async throws -> [Task<Void, any Error>] {
        let entered = EnteredCount()
        var holders: [Task<Void, any Error>] = []
        for _ in 0..<count {
            holders.append(Task {
                try await runtime.fetchStreaming(3000, path: "/hold") { _ in
                    entered.add()
                    try await Task.sleep(for: .seconds(600))  // until cancelled
                }
            })
        }
        while entered.value < count { try await Task.sleep(for: .milliseconds(10)) }
        return holders
    }

    @Test("a fetch queued behind 64 held connections is served once one of them goes away")
    func queuedFetchServed() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            _ = try await runtime.startServer(Self.server, port: 3000)
            let holders = try await Self.holdConnections(64, in: runtime)
            defer { holders.forEach { $0.cancel() } }
            let queued = Task { try await runtime.fetch(3000, path: "/quick", timeout: .seconds(30)) }
            try await Task.sleep(for: .milliseconds(100))  // let it queue (it cannot finish before a slot frees)
            holders[0].cancel()
            let response = try await queued.value
            #expect(response.bodyText == "quick")
        }
    }

    @Test("disposing ends every fetch queued for a full pool with .disposed")
    func disposeEndsQueuedFetches() async throws {
        let runtime = try await NodeRuntime.create(permissions: Permissions(network: .allow))
        var holders: [Task<Void, any Error>] = []
        defer { holders.forEach { $0.cancel() } }
        do {
            _ = try await runtime.startServer(Self.server, port: 3000)
            holders = try await Self.holdConnections(64, in: runtime)
        } catch {
            await runtime.dispose()
            throw error
        }
        let queued = (0..<3).map { _ in
            Task { () -> SecureExecError.Code? in
                do {
                    _ = try await runtime.fetch(3000, path: "/quick")
                    return nil
                } catch let error as SecureExecError {
                    return error.code
                } catch {
                    return nil
                }
            }
        }
        try await Task.sleep(for: .milliseconds(100))
        await runtime.dispose()
        for task in queued {
            let code = await task.value
            #expect(code == .disposed, "a queued fetch ended with \(String(describing: code))")
        }
    }
}

/// How many holders reached their handler.
private final class EnteredCount: Sendable {
    private let count = Mutex(0)
    func add() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
