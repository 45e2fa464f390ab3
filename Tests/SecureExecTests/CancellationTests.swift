import Foundation
import Glibc
import Synchronization
import TestSupport
import Testing

@testable import SecureExec

/// Every async call honours its task's cancellation: it returns promptly
/// with `.cancelled` and leaves nothing running that it started.
@Suite("Cancellation", .needsRoot, .timeLimit(.minutes(2)))
struct CancellationTests {
    /// A bound far below the guests' own timeouts: a call that ignored
    /// cancellation would run into those instead.
    static let prompt: Duration = .seconds(5)

    /// Runs `operation` in a task, cancels it after `delay`, and returns its
    /// error and how long the task took after the cancellation.
    static func cancelled<T: Sendable>(
        after delay: Duration, _ operation: @escaping @Sendable () async throws -> T
    ) async -> (error: (any Error)?, afterCancel: Duration) {
        let task = Task { try await operation() }
        try? await Task.sleep(for: delay)
        let clock = ContinuousClock()
        let cancelledAt = clock.now
        task.cancel()
        let result = await task.result
        if case .failure(let error) = result { return (error, clock.now - cancelledAt) }
        return (nil, clock.now - cancelledAt)
    }

    static func expectCancelled(_ error: (any Error)?, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let error = error as? SecureExecError else {
            Issue.record("expected .cancelled, got \(String(describing: error))", sourceLocation: sourceLocation)
            return
        }
        #expect(error.code == .cancelled, "\(error)", sourceLocation: sourceLocation)
    }

    @Test("a cancelled exec returns .cancelled promptly and its guest is gone")
    func exec() async throws {
        try await withRuntime { runtime in
            let outcome = await Self.cancelled(after: .milliseconds(300)) {
                try await runtime.exec("setInterval(() => {}, 1000)", timeout: .seconds(60))
            }
            Self.expectCancelled(outcome.error)
            #expect(outcome.afterCancel < Self.prompt)
            #expect(runtime.sandbox.guests.runningRecords.isEmpty)
        }
    }

    @Test("a guest that ignores SIGTERM is killed after the grace period when its exec is cancelled")
    func execIgnoringTerm() async throws {
        try await withRuntime(limits: Limits(terminationGrace: .milliseconds(200))) { runtime in
            let outcome = await Self.cancelled(after: .milliseconds(300)) {
                try await runtime.exec("process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)", timeout: .seconds(60))
            }
            Self.expectCancelled(outcome.error)
            #expect(outcome.afterCancel < Self.prompt)
            #expect(runtime.sandbox.guests.runningRecords.isEmpty)
        }
    }

    @Test("a cancelled wait ends the process and throws .cancelled")
    func wait() async throws {
        try await withRuntime { runtime in
            let process = try await runtime.spawn("setInterval(() => {}, 1000)")
            let outcome = await Self.cancelled(after: .milliseconds(200)) { try await process.wait() }
            Self.expectCancelled(outcome.error)
            #expect(outcome.afterCancel < Self.prompt)
            #expect(process.termination != nil)
        }
    }

    @Test("a cancelled run returns .cancelled and its guest is gone")
    func run() async throws {
        try await withRuntime { runtime in
            let outcome = await Self.cancelled(after: .milliseconds(400)) {
                try await runtime.run("setInterval(() => {}, 1000)", as: Int.self, timeout: .seconds(60))
            }
            Self.expectCancelled(outcome.error)
            #expect(outcome.afterCancel < Self.prompt)
            #expect(runtime.sandbox.guests.runningRecords.isEmpty)
        }
    }

    @Test("spawn in a cancelled task starts nothing")
    func spawn() async throws {
        try await withRuntime { runtime in
            let task = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return try await runtime.spawn("setInterval(() => {}, 1000)")
            }
            Self.expectCancelled(await task.result.failure)
            #expect(runtime.sandbox.guests.runningRecords.isEmpty)
        }
    }

    @Test("create in a cancelled task builds nothing; withNodeRuntime does not run its body")
    func create() async throws {
        let created = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await NodeRuntime.create()
        }
        Self.expectCancelled(await created.result.failure)
        let ran = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await withNodeRuntime { _ in true }
        }
        Self.expectCancelled(await ran.result.failure)
    }

    @Test("a create cancelled while the sandbox is being built leaves no sandbox behind")
    func createMidway() async throws {
        for delay in [1, 5, 20] {
            let task = Task { try await NodeRuntime.create() }
            try? await Task.sleep(for: .milliseconds(delay))
            task.cancel()
            switch await task.result {
            case .success(let runtime):
                // Built before the cancellation arrived: an ordinary runtime.
                await runtime.dispose()
            case .failure(let error):
                Self.expectCancelled(error)
            }
        }
    }

    @Test("a fetch waiting for a pooled connection honours its timeout and its cancellation")
    func poolWait() async throws {
        try await withRuntime(permissions: Permissions(network: .allow)) { runtime in
            let server = try await runtime.spawn(
                """
                require("node:http").createServer((request, response) => {
                  response.writeHead(200);
                  response.write("open");  // never ends: each request holds its connection
                }).listen(3000);
                """)
            try await runtime.waitForListener(port: 3000, process: server)
            let holders = (0..<GuestConnectionPool.maxConnectionsPerPort).map { _ in
                Task {
                    try await runtime.fetchStreaming(3000) { response in
                        for try await _ in response.body {}
                    }
                }
            }
            defer { holders.forEach { $0.cancel() } }
            // Every connection is held once each holder got its first chunk.
            try await Task.sleep(for: .milliseconds(500))
            let clock = ContinuousClock()
            let start = clock.now
            do {
                _ = try await runtime.fetch(3000, timeout: .seconds(1))
                Issue.record("a fetch beyond the pool's connections did not wait")
            } catch {
                #expect((error as? SecureExecError)?.code == .timeout, "\(error)")
            }
            #expect(clock.now - start < Self.prompt)
            let outcome = await Self.cancelled(after: .milliseconds(200)) { try await runtime.fetch(3000, timeout: .seconds(3600)) }
            Self.expectCancelled(outcome.error)
            #expect(outcome.afterCancel < Self.prompt)
        }
    }

    @Test("dropping the last reference to an undisposed runtime ends its sandbox")
    func droppedRuntime() async throws {
        var initPID: Int32 = 0
        do {
            let runtime = try await NodeRuntime.create()
            initPID = runtime.sandbox.initPID
            _ = try await runtime.spawn("setInterval(() => {}, 1000)")
        }
        // The runtime is gone; its init (and with it every guest) ends.
        let gone = await poll(for: .seconds(10)) { kill(initPID, 0) != 0 && errno == ESRCH }
        #expect(gone, "init \(initPID) still runs after its runtime was dropped")
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

/// Output callbacks run where they cannot stall the runtime.
@Suite("Output callbacks", .needsRoot, .timeLimit(.minutes(1)))
struct OutputCallbackTests {
    @Test("a stdout callback that blocks does not stall file operations of the same runtime")
    func slowConsumer() async throws {
        try await withRuntime { runtime in
            let release = DispatchSemaphore(value: 0)
            let entered = Mutex(false)
            let process = try await runtime.spawn(
                "console.log('first'); setTimeout(() => {}, 60000)",
                onStdout: { _ in
                    entered.withLock { $0 = true }
                    release.wait()  // the consumer is stuck
                })
            defer { release.signal() }
            #expect(await poll(for: .seconds(10)) { entered.withLock { $0 } }, "the guest's output never arrived")
            let listed = await finishes(within: .seconds(10)) {
                _ = try? await runtime.readDirectory("/workspace")
            }
            #expect(listed, "readDirectory waited for a blocked output callback")
            release.signal()
            process.kill()
            _ = try await process.wait()
        }
    }
}
