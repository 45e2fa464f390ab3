import CNamespaces
import Dispatch
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What init answered to one request.
enum InitReply: Sendable, Equatable {
    /// A spawn request: the guest runs with this pid (in the sandbox).
    case spawned(pid: Int32)
    /// A file request: 0, or the operation's errno.
    case fileDone(errno: Int32)
}

/// The control channel to one init, and the one place that matches init's
/// answers to the requests they answer.
///
/// Concurrency: requests are sent from any thread; events are handled on
/// the sandbox's serial queue, in the order init sent them. `state` guards
/// the outstanding requests and the setup outcome. A reply's `onReply` runs
/// on that queue before any later event, so a guest's `SPAWNED` is booked
/// before its `EXITED` is seen. Handlers never block.
final class InitConnection: Sendable {
    private let channel: ControlChannel
    private let logger: Logger
    private let state = Mutex(State())

    private struct State {
        var nextID: UInt32 = 1
        var outstanding: [UInt32: PendingReply] = [:]
        /// Requests given up on (timed out) whose answer may still come.
        var abandoned: Set<UInt32> = []
        var setup = OneShot<Result<Void, SecureExecError>>()
        var closed = false
    }

    /// - Parameters:
    ///   - onExit: a guest's raw wait status (`SE_EV_EXITED`).
    ///   - onClosed: init is gone; every outstanding request has been failed first.
    init(
        fd: Int32, queue: DispatchQueue, logger: Logger, onExit: @escaping @Sendable (Int32, Int32) -> Void,
        onClosed: @escaping @Sendable () -> Void
    ) {
        self.logger = logger
        // The channel's handlers reach this connection weakly: the channel
        // lives as long as the connection, not the other way round.
        let route = Route()
        channel = ControlChannel(
            fd: fd, queue: queue,
            onEvent: { event in route.connection?.handle(event, onExit: onExit) },
            onClosed: {
                route.connection?.hangUp()
                onClosed()
            })
        route.connection = self
        channel.start()
    }

    /// A weak reference the channel's handlers reach this connection by. A
    /// class, so the handlers share one heap object (a `Mutex` local captured
    /// by escaping closures is not guaranteed a stable address).
    private final class Route: @unchecked Sendable {  // `lock` guards `weakConnection`
        private let lock = NSLock()
        private weak var weakConnection: InitConnection?
        var connection: InitConnection? {
            get { lock.withLock { weakConnection } }
            set { lock.withLock { weakConnection = newValue } }
        }
    }

    // MARK: - Requests

    /// Sends a request that init answers, and returns its pending answer.
    /// `onReply` (if any) runs on the sandbox's queue as the answer arrives,
    /// in event order; `wait()` on the result returns it too.
    func request(
        _ type: se_request_type, step: String, records: (UInt32) -> [String], fds: [Int32],
        onReply: (@Sendable (Result<InitReply, SecureExecError>) -> Void)? = nil
    ) throws(SecureExecError) -> PendingReply {
        let (id, pending) = try state.withLock { state throws(SecureExecError) in
            guard !state.closed else { throw SecureExecError(.disposed, "the runtime has been disposed", step: step) }
            let id = state.nextID
            state.nextID = state.nextID == UInt32.max ? 1 : state.nextID + 1
            let pending = PendingReply(id: id, onReply: onReply)
            state.outstanding[id] = pending
            return (id, pending)
        }
        do throws(SecureExecError) {
            try channel.send(type, id: id, records: records(id), fds: fds)
        } catch {
            // Init's exit may have failed the request already (and run its
            // onReply): then that outcome stands, and it is returned.
            guard state.withLock({ $0.outstanding.removeValue(forKey: id) }) != nil else { return pending }
            throw error
        }
        return pending
    }

    /// Gives up waiting for `pending` with `error`; its answer, if it still
    /// comes, is ignored.
    func abandon(_ pending: PendingReply, with error: SecureExecError) {
        let removed = state.withLock { state in
            guard state.outstanding.removeValue(forKey: pending.id) != nil else { return false }
            state.abandoned.insert(pending.id)
            return true
        }
        if removed { pending.fulfil(.failure(error)) }
    }

    /// Sends a request init does not answer when it succeeds (signals).
    func post(_ type: se_request_type, targetPID: Int32 = 0, signal: Int32) throws(SecureExecError) {
        try channel.send(type, targetPID: targetPID, signal: signal)
    }

    /// Sends the configuration (the first request) and waits for READY.
    func configure(records: [String], fds: [Int32], queue: DispatchQueue, timeout: Duration) async throws(SecureExecError) {
        try channel.send(SE_REQ_CONFIG, records: records, fds: fds)
        queue.asyncAfter(deadline: .now() + DispatchTimeInterval.clamped(timeout)) { [weak self] in
            self?.finishSetup(.failure(SecureExecError(.timeout, "the sandbox did not become ready within \(timeout)", step: "setup")))
        }
        // Cancelling the caller ends the wait at once; the launcher then
        // disposes what it built.
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                state.withLock { $0.setup.wait(continuation) }?.resume()
            }
        } onCancel: {
            finishSetup(.failure(SecureExecError(.cancelled, "creating the runtime was cancelled", step: "create")))
        }
        try result.get()
    }

    /// Closes the channel (init sees the hang-up) and waits until the
    /// descriptor is really closed.
    func close() async {
        await channel.close()
        // A cancelled read source runs no pending event: the hang-up may
        // never have been seen, so every request still waiting fails here.
        hangUp()
    }

    // MARK: - Events

    private func handle(_ event: InitProtocol.Event, onExit: (Int32, Int32) -> Void) {
        switch event {
        case .ready:
            finishSetup(.success(()))
        case .setupFailed(let step, let errno):
            finishSetup(.failure(SystemCall.failure(.sandboxSetupFailed, "building the sandbox failed", step: step, errno: errno)))
        case .spawned(let request, let pid):
            answer(request, .success(.spawned(pid: pid)))
        case .spawnFailed(let request, let step, let errno):
            answer(request, .failure(SystemCall.failure(.spawnFailed, InitProtocol.spawnFailure(step: step), step: step, errno: errno)))
        case .fileDone(let request, let errno):
            answer(request, .success(.fileDone(errno: errno)))
        case .requestFailed(let request, let step, let errno):
            let error = SystemCall.failure(.protocolError, "the sandbox's init refused a request (\(step))", step: step, errno: errno)
            if request == 0 || !answer(request, .failure(error)) {
                logger.error("init refused a request", metadata: ["request": "\(request)", "reason": "\(error)"])
            }
        case .exited(let pid, let status):
            onExit(pid, status)
        case .signalFailed(_, let pid, let errno):
            // ESRCH: the guest had already exited; its exit event is on its way.
            if errno != ESRCH {
                logger.warning("init could not signal a guest", metadata: ["pid": "\(pid)", "errno": "\(errno)"])
            }
        case .unknown(let type):
            logger.error("init sent an event of unknown kind", metadata: ["type": "\(type)"])
        }
    }

    /// Hands an answer to its request; false when no such request is outstanding.
    @discardableResult
    private func answer(_ id: UInt32, _ result: Result<InitReply, SecureExecError>) -> Bool {
        let (pending, late) = state.withLock { state in
            (state.outstanding.removeValue(forKey: id), state.abandoned.remove(id) != nil)
        }
        guard let pending else {
            if !late { logger.error("init answered a request that is not outstanding", metadata: ["request": "\(id)"]) }
            return late
        }
        pending.fulfil(result)
        return true
    }

    private func finishSetup(_ result: Result<Void, SecureExecError>) {
        state.withLock { $0.setup.fulfil(result) }?.resume(returning: result)
    }

    /// Init is gone: every request still waiting fails, and so does setup.
    private func hangUp() {
        let outstanding = state.withLock { state in
            state.closed = true
            defer { state.outstanding = [:] }
            return Array(state.outstanding.values)
        }
        finishSetup(.failure(SecureExecError(.sandboxSetupFailed, "the sandbox's init exited during setup", step: "setup")))
        let gone = SecureExecError(.disposed, "the sandbox ended before init answered", step: "send request")
        for pending in outstanding { pending.fulfil(.failure(gone)) }
    }
}

/// One request's answer, still to come or already here. The first outcome
/// (init's answer, a timeout, init's exit) wins; later ones are ignored.
final class PendingReply: Sendable {
    let id: UInt32
    private let state: Mutex<(outcome: OneShot<Result<InitReply, SecureExecError>>, onReply: (@Sendable (Result<InitReply, SecureExecError>) -> Void)?)>

    init(id: UInt32, onReply: (@Sendable (Result<InitReply, SecureExecError>) -> Void)?) {
        self.id = id
        state = Mutex((OneShot(), onReply))
    }

    func fulfil(_ result: Result<InitReply, SecureExecError>) {
        let (waiter, onReply, first) = state.withLock { state in
            let first = !state.outcome.isFulfilled
            let waiter = state.outcome.fulfil(result)
            defer { state.onReply = nil }
            return (waiter, state.onReply, first)
        }
        guard first else { return }
        onReply?(result)
        waiter?.resume(returning: result)
    }

    func wait() async -> Result<InitReply, SecureExecError> {
        await withCheckedContinuation { continuation in
            state.withLock { $0.outcome.wait(continuation) }?.resume()
        }
    }
}

/// A value set once and awaited by one waiter, which may come before or
/// after it is set. Kept inside a caller's lock; the continuation it hands
/// back is resumed outside it.
struct OneShot<Value: Sendable>: Sendable {
    private var value: Value?
    private var waiter: CheckedContinuation<Value, Never>?

    var isFulfilled: Bool { value != nil }

    /// Sets the value (the first time only); returns the waiter to resume.
    mutating func fulfil(_ value: Value) -> CheckedContinuation<Value, Never>? {
        guard self.value == nil else { return nil }
        self.value = value
        defer { waiter = nil }
        return waiter
    }

    /// Registers the waiter; when the value is already here, returns it
    /// with the waiter, to resume at once (outside the caller's lock).
    mutating func wait(_ continuation: CheckedContinuation<Value, Never>) -> ReadyWaiter<Value>? {
        if let value { return ReadyWaiter(continuation: continuation, value: value) }
        waiter = continuation
        return nil
    }
}

/// A waiter whose value was already there.
struct ReadyWaiter<Value: Sendable> {
    let continuation: CheckedContinuation<Value, Never>
    let value: Value
    func resume() { continuation.resume(returning: value) }
}
