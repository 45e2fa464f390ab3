import CNamespaces
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One event from a sandbox's init.
enum InitEvent: Sendable {
    case ready
    case setupFailed(step: String, errno: Int32)
    case spawned(request: UInt32, pid: Int32)
    case spawnFailed(request: UInt32, step: String, errno: Int32)
    case exited(pid: Int32, status: Int32)
    case signalFailed(request: UInt32, pid: Int32, errno: Int32)
    case fileDone(request: UInt32, errno: Int32)
    /// The socket closed: init is gone.
    case closed
}

/// The supervisor's end of the SEQPACKET control socket to one init.
///
/// Requests are sent synchronously from any thread (one record each, fds as
/// SCM_RIGHTS; the kernel duplicates them, the caller keeps its copies).
/// Events arrive on a Dispatch read source and go to `onEvent` in order.
final class ControlChannel: Sendable {
    private let fd: Int32
    private let source: Mutex<DispatchSourceBox?>
    private let sendLock = Mutex(())
    private let closed = CloseSignal()

    init(fd: Int32, queue: DispatchQueue, onEvent: @escaping @Sendable (InitEvent) -> Void) {
        self.fd = fd
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        let box = DispatchSourceBox(source: source)
        self.source = Mutex(box)
        source.setEventHandler { [fd] in
            while true {
                var event = se_event()
                let got = se_receive_event(fd, &event)
                if got == 1 {
                    if let decoded = ControlChannel.decode(event) { onEvent(decoded) }
                    continue
                }
                if got == 0 || (errno != EAGAIN && errno != EINTR) {
                    box.cancel()
                    onEvent(.closed)
                }
                return
            }
        }
        source.setCancelHandler { [closed] in
            SystemCall.close(fd)
            closed.fire()
        }
        source.resume()
    }

    /// Sends one request. Throws `.disposed`-free I/O errors as `.ioFailed`.
    func send(_ type: se_request_type, id: UInt32 = 0, targetPID: Int32 = 0, signal: Int32 = 0,
              records: [String] = [], fds: [Int32] = []) throws(SecureExecError)
    {
        var payload: [UInt8] = []
        for record in records {
            payload += Array(record.utf8)
            payload.append(0)
        }
        guard payload.count + MemoryLayout<se_request>.size <= Int(SE_MAX_REQUEST) else {
            throw SecureExecError(
                .invalidArgument,
                "the request is \(payload.count) bytes; arguments and environment together must stay under \(SE_MAX_REQUEST - 1024) bytes",
                step: "send request")
        }
        var header = se_request(
            type: type.rawValue, id: id, target_pid: targetPID, signal: signal,
            payload_len: UInt32(payload.count), fd_count: UInt32(fds.count))
        let result = sendLock.withLock { _ in
            payload.withUnsafeBytes { bytes in
                fds.withUnsafeBufferPointer { descriptors in
                    se_send_request(fd, &header, bytes.baseAddress, descriptors.baseAddress)
                }
            }
        }
        if result != 0 {
            throw SystemCall.failure(.ioFailed, "could not reach the sandbox's init", step: "send request")
        }
    }

    /// Stops reading and closes the socket (init sees the hang-up and exits);
    /// returns once the descriptor is really closed. Dispatch owns the fd
    /// until its cancel handler has run, so that is where it is closed and
    /// what this waits for.
    func close() async {
        guard let box = source.withLock({ source -> DispatchSourceBox? in
            defer { source = nil }
            return source
        }) else { return }
        box.cancel()
        await closed.wait()
    }

    private static func decode(_ event: se_event) -> InitEvent? {
        let step = withUnsafeBytes(of: event.step) { bytes in
            String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        switch event.type {
        case SE_EV_READY.rawValue: return .ready
        case SE_EV_SETUP_FAILED.rawValue: return .setupFailed(step: step, errno: event.err)
        case SE_EV_SPAWNED.rawValue: return .spawned(request: event.id, pid: event.pid)
        case SE_EV_SPAWN_FAILED.rawValue: return .spawnFailed(request: event.id, step: step, errno: event.err)
        case SE_EV_EXITED.rawValue: return .exited(pid: event.pid, status: event.status)
        case SE_EV_SIGNAL_FAILED.rawValue: return .signalFailed(request: event.id, pid: event.pid, errno: event.err)
        case SE_EV_FILE_DONE.rawValue: return .fileDone(request: event.id, errno: event.err)
        default: return nil
        }
    }
}

/// Fires once (from a Dispatch cancel handler); waiters before or after resume.
final class CloseSignal: Sendable {
    private let state = Mutex<(fired: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func fire() {
        let waiters = state.withLock { state in
            state.fired = true
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume() }
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let fired = state.withLock { state in
                if !state.fired { state.waiters.append(continuation) }
                return state.fired
            }
            if fired { continuation.resume() }
        }
    }
}
