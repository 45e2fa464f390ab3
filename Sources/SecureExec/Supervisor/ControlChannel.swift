import CNamespaces
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The supervisor's end of the SEQPACKET control socket to one init.
///
/// Requests are sent synchronously from any thread (one record each, fds as
/// SCM_RIGHTS; the kernel duplicates them, the caller keeps its copies).
/// Events arrive on a Dispatch read source and go to `onEvent` in order;
/// `onClosed` runs once, after the last event, when the socket hangs up.
/// What the records and events mean is `InitProtocol`'s business, and which
/// request an event answers is `InitConnection`'s.
final class ControlChannel: Sendable {
    private let fd: Int32
    private let source: Mutex<DispatchSourceBox?>
    /// Held while sending; true once the descriptor is closed, so a send can
    /// never reach a descriptor number the process has since reused.
    private let sendLock = SendGate()
    private let closed = CloseSignal()

    init(
        fd: Int32, queue: DispatchQueue, onEvent: @escaping @Sendable (InitProtocol.Event) -> Void,
        onClosed: @escaping @Sendable () -> Void
    ) {
        self.fd = fd
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        let box = DispatchSourceBox(source: source)
        self.source = Mutex(box)
        source.setEventHandler { [fd] in
            while true {
                var event = se_event()
                let got = se_receive_event(fd, &event)
                if got == 1 {
                    onEvent(InitProtocol.decode(event))
                    continue
                }
                if got == 0 || (errno != EAGAIN && errno != EINTR) {
                    box.cancel()
                    onClosed()
                }
                return
            }
        }
        source.setCancelHandler { [closed, sendLock] in
            sendLock.state.withLock { isClosed in
                isClosed = true
                SystemCall.close(fd)
            }
            closed.fire()
        }
    }

    /// Starts reading events (once the receiver is ready for them).
    func start() {
        source.withLock { $0?.resume() }
    }

    /// Sends one request; a failure to send is `.ioFailed`.
    func send(_ type: se_request_type, id: UInt32 = 0, targetPID: Int32 = 0, signal: Int32 = 0,
              records: [String] = [], fds: [Int32] = []) throws(SecureExecError)
    {
        let payload = try InitProtocol.payload(records)
        var header = se_request(
            type: type.rawValue, id: id, target_pid: targetPID, signal: signal,
            payload_len: UInt32(payload.count), fd_count: UInt32(fds.count))
        let result = sendLock.state.withLock { isClosed -> Int32 in
            if isClosed {
                errno = ESHUTDOWN
                return -1
            }
            return payload.withUnsafeBytes { bytes in
                fds.withUnsafeBufferPointer { descriptors in
                    se_send_request(fd, &header, bytes.baseAddress, descriptors.baseAddress)
                }
            }
        }
        if result != 0 {
            if errno == ESHUTDOWN {
                throw SecureExecError(.disposed, "the runtime has been disposed", step: "send request")
            }
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
}

/// `ControlChannel`'s send lock, shared with its cancel handler.
final class SendGate: Sendable {
    let state = Mutex(false)
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
