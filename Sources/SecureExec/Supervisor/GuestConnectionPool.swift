import AsyncAlgorithms
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Keep-alive HTTP/1.1 connections to one sandbox's guest ports.
///
/// Each connection is a socket dialed inside the sandbox's network namespace,
/// adopted by NIO. After a response that allows keep-alive, the connection
/// waits idle for the next request to the same port, so a burst of fetches
/// pays one dial per concurrent request, not per request. At most
/// `maxConnectionsPerPort` are open per port; further requests queue.
///
/// Concurrency: one `state` Mutex guards the idle connections, the open
/// count and the waiters of every port; deciding to wait and enqueueing
/// happen under it, so a check-in or shutdown cannot slip between them.
/// Dialing (a setns on a thread of its own, `NetnsDialer`) and NIO I/O
/// happen outside the lock.
package final class GuestConnectionPool: Sendable {
    package static let maxConnectionsPerPort = 64
    private static let maxIdlePerPort = 16

    /// What a caller of `checkOut` is given: a kept-alive connection, a slot
    /// to dial a new one in, nothing (the pool is shut down), or the reason
    /// it stopped waiting (its task was cancelled or its deadline passed).
    private enum Grant {
        case connection(GuestConnection)
        case dial
        case closed
        case gaveUp(SecureExecError)
    }

    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Grant, Never>
    }

    private struct PortState {
        var idle: [GuestConnection] = []
        /// Connections counted against the limit: idle, in use, or being dialed.
        var open = 0
        var waiting: [Waiter] = []
    }

    private struct State {
        var ports: [Int: PortState] = [:]
        var closed = false
        var nextWaiter: UInt64 = 0
    }

    private let dialer: NetnsDialer
    private let group: any EventLoopGroup
    /// One lock for every decision: whether to wait and the enqueueing happen
    /// under it together, so a connection returned or a shutdown in between
    /// can never leave a waiter unresumed.
    private let state = Mutex(State())

    package init(dialer: NetnsDialer, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.dialer = dialer
        self.group = group
    }

    /// Sends one request and hands the response, as it arrives, to `handle`.
    ///
    /// The connection is returned to the pool once the response ended and
    /// `handle` returned; if `handle` returns early (the body not fully
    /// read), throws, or the deadline passes, the connection is closed.
    package func exchange<Result>(
        port: Int, method: String, path: String, headers: [(String, String)], body: GuestRequestBody,
        connectTimeout: Duration, timeout: Duration?, isolation: isolated (any Actor)? = #isolation,
        _ handle: (GuestResponse) async throws -> Result
    ) async throws -> Result {
        let head = try Self.makeHead(method: method, path: path, headers: headers, body: body, port: port)
        let deadline = timeout.map(\.deadlineFromNow)
        var attempt = 0
        while true {
            attempt += 1
            let connection = try await checkOut(
                port: port, connectTimeout: connectTimeout, deadline: deadline, timeout: timeout)
            let job = GuestExchange(head: head, body: body, reused: connection.hasServed)
            let watchdog = deadline.map { deadline in
                Task {
                    try? await Task.sleep(until: deadline)
                    if !Task.isCancelled {
                        job.abort(SecureExecError(.timeout, "the guest did not answer within \(timeout!)", step: "fetch"))
                        connection.close()
                    }
                }
            }
            defer { watchdog?.cancel() }
            connection.submit(job) { [weak self] reusable in self?.checkIn(connection, port: port, reusable: reusable) }
            do {
                let response = try await withTaskCancellationHandler {
                    try await job.response()
                } onCancel: {
                    job.abort(SecureExecError(.cancelled, "the fetch was cancelled", step: "fetch"))
                    connection.close()
                }
                let result: Result
                do {
                    result = try await withTaskCancellationHandler {
                        try await handle(response)
                    } onCancel: {
                        job.abort(SecureExecError(.cancelled, "the fetch was cancelled", step: "fetch"))
                        connection.close()
                    }
                } catch {
                    job.abandon(connection)
                    throw error
                }
                if !job.isComplete { job.abandon(connection) }
                return result
            } catch let error as SecureExecError where error.step == GuestExchange.staleStep {
                // A kept-alive connection the guest had already closed: try a new one once.
                guard attempt == 1, body.isReplayable else {
                    throw SecureExecError(.protocolError, "the guest closed the connection before answering", step: "fetch")
                }
                continue
            }
        }
    }

    /// Closes every idle connection and refuses new requests; waiters get `.disposed`.
    package func shutdown() {
        let (idle, waiting) = state.withLock { state in
            state.closed = true
            let idle = state.ports.values.flatMap(\.idle)
            let waiting = state.ports.values.flatMap(\.waiting)
            state.ports = [:]
            return (idle, waiting)
        }
        idle.forEach { $0.close() }
        waiting.forEach { $0.continuation.resume(returning: .closed) }
    }

    /// A connection for `port`: an idle one, a new one, or the next one
    /// freed. Waiting for one ends with the task's cancellation (`.cancelled`)
    /// or at `deadline` (`.timeout`).
    private func checkOut(
        port: Int, connectTimeout: Duration, deadline: ContinuousClock.Instant?, timeout: Duration?
    ) async throws -> GuestConnection {
        if Task.isCancelled { throw Self.cancelled }
        // Usually a connection or a slot is free: one lock, no timer.
        let grant: Grant
        if let now = state.withLock({ Self.grantNow(&$0, port: port) }) {
            grant = now
        } else {
            grant = await waitForGrant(port: port, deadline: deadline, timeout: timeout)
        }
        switch grant {
        case .gaveUp(let error):
            throw error
        case .connection(let connection):
            return connection
        case .closed:
            throw SecureExecError(.disposed, "the runtime has been disposed", step: "fetch")
        case .dial:
            if state.withLock({ $0.closed }) {
                throw SecureExecError(.disposed, "the runtime has been disposed", step: "fetch")
            }
            do {
                let fd = try await dialer.connectLoopback(port: port, timeout: connectTimeout)
                return try await GuestConnection.adopt(fd: fd, group: group)
            } catch {
                release(port: port)
                throw error
            }
        }
    }

    private func checkIn(_ connection: GuestConnection, port: Int, reusable: Bool) {
        let (waiter, grant, close): (CheckedContinuation<Grant, Never>?, Grant, Bool) = state.withLock { state in
            if state.closed { return (nil, .closed, true) }  // shutdown already let every waiter go
            var ports = state.ports[port, default: PortState()]
            defer { state.ports[port] = ports }
            if reusable {
                if !ports.waiting.isEmpty { return (ports.waiting.removeFirst().continuation, .connection(connection), false) }
                if ports.idle.count < Self.maxIdlePerPort {
                    ports.idle.append(connection)
                    return (nil, .dial, false)
                }
            }
            // Closed: its slot goes to the first waiter (to dial), else back to the pool.
            if !ports.waiting.isEmpty { return (ports.waiting.removeFirst().continuation, .dial, true) }
            ports.open -= 1
            return (nil, .dial, true)
        }
        if close { connection.close() }
        waiter?.resume(returning: grant)
    }

    /// A dial that failed gives its slot to the first waiter, else back to the pool.
    private func release(port: Int) {
        let waiter = state.withLock { state -> CheckedContinuation<Grant, Never>? in
            if state.closed { return nil }
            var ports = state.ports[port, default: PortState()]
            defer { state.ports[port] = ports }
            if !ports.waiting.isEmpty { return ports.waiting.removeFirst().continuation }
            ports.open -= 1
            return nil
        }
        waiter?.resume(returning: .dial)
    }

    private static let cancelled = SecureExecError(.cancelled, "the fetch was cancelled", step: "fetch")

    /// What `port` can give at once (called under the lock): the pool's end,
    /// an idle live connection, or a slot to dial; nil when all are in use.
    private static func grantNow(_ state: inout State, port: Int) -> Grant? {
        if state.closed { return .closed }
        var ports = state.ports[port, default: PortState()]
        defer { state.ports[port] = ports }
        while let connection = ports.idle.popLast() {
            if connection.isAlive { return .connection(connection) }
            ports.open -= 1
        }
        if ports.open < maxConnectionsPerPort {
            ports.open += 1
            return .dial
        }
        return nil
    }

    /// Queues for the next connection or slot of `port`, until one is
    /// handed over, the task is cancelled, or `deadline` passes.
    private func waitForGrant(port: Int, deadline: ContinuousClock.Instant?, timeout: Duration?) async -> Grant {
        let id = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        let timer = deadline.map { deadline in
            Task { [weak self] in
                try? await Task.sleep(until: deadline)
                guard !Task.isCancelled else { return }
                self?.giveUp(
                    waiter: id, port: port,
                    SecureExecError(.timeout, "no connection to port \(port) was free within \(timeout!)", step: "fetch"))
            }
        }
        defer { timer?.cancel() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now: Grant? = state.withLock { state in
                    // Checked under the lock: a cancellation that came before
                    // the waiter is enqueued finds nothing to remove.
                    if Task.isCancelled { return .gaveUp(Self.cancelled) }
                    // Freed since the first look: no wait after all.
                    if let now = Self.grantNow(&state, port: port) { return now }
                    state.ports[port, default: PortState()].waiting.append(
                        Waiter(id: id, continuation: continuation))  // resumed by checkIn, release, shutdown or giveUp
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            giveUp(waiter: id, port: port, Self.cancelled)
        }
    }

    /// Ends one waiter's wait with `error`, if it is still waiting (a waiter
    /// already granted a connection or slot keeps it).
    private func giveUp(waiter id: UInt64, port: Int, _ error: SecureExecError) {
        let waiter = state.withLock { state -> Waiter? in
            guard var ports = state.ports[port], let index = ports.waiting.firstIndex(where: { $0.id == id }) else {
                return nil
            }
            defer { state.ports[port] = ports }
            return ports.waiting.remove(at: index)
        }
        waiter?.continuation.resume(returning: .gaveUp(error))
    }

    static func makeHead(method: String, path: String, headers: [(String, String)], body: GuestRequestBody, port: Int)
        throws(SecureExecError) -> HTTPRequestHead
    {
        try HTTPRequestSpec(method: method, path: path, headers: headers).validate()
        // Framing is ours: the caller's content-length, transfer-encoding and connection are replaced.
        let owned: Set<String> = ["content-length", "transfer-encoding", "connection"]
        var fields = HTTPHeaders(headers.filter { !owned.contains($0.0.lowercased()) })
        // Dev servers often check Host against "localhost" (vite, webpack); it names the guest's loopback.
        if !fields.contains(name: "host") { fields.add(name: "host", value: "localhost:\(port)") }
        let httpMethod = HTTPMethod(rawValue: method)
        switch body {
        case .none:
            if httpMethod == .POST || httpMethod == .PUT || httpMethod == .PATCH {
                fields.add(name: "content-length", value: "0")
            }
        case .bytes(let bytes):
            fields.add(name: "content-length", value: String(bytes.count))
        case .stream:
            fields.add(name: "transfer-encoding", value: "chunked")
        }
        return HTTPRequestHead(version: .http1_1, method: httpMethod, uri: path, headers: fields)
    }
}
