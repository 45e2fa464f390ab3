import Dispatch

#if canImport(Glibc)
import Glibc
#endif

/// Reads one of a guest's output pipes as chunks arrive, until EOF.
///
/// Owns `fd` (non-blocking read end) and closes it after EOF or `cancel()`.
/// Chunks are delivered in order on `queue`; whatever the guest wrote before
/// it died is still in the pipe and is delivered before `onEnd`.
final class StdioPump: Sendable {
    private let source: DispatchSourceBox

    init(fd: Int32, queue: DispatchQueue, onChunk: @escaping @Sendable ([UInt8]) -> Void,
         onEnd: @escaping @Sendable () -> Void)
    {
        SystemCall.setNonBlocking(fd)
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        self.source = DispatchSourceBox(source: source)
        let box = self.source
        source.setEventHandler {
            var buffer = [UInt8](repeating: 0, count: 65536)
            // Bounded per wake-up so one chatty guest cannot starve the queue.
            for _ in 0..<16 {
                let got = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if got > 0 {
                    onChunk(Array(buffer[0..<got]))
                    continue
                }
                if got < 0 && (errno == EAGAIN || errno == EINTR) { return }
                box.cancel()  // EOF or a hard error: the stream is over
                return
            }
        }
        source.setCancelHandler {
            SystemCall.close(fd)
            onEnd()
        }
        source.resume()
    }

    func cancel() { source.cancel() }
}
