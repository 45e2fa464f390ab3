import Foundation
import SecureExec

#if canImport(Glibc)
import Glibc
#endif

/// Copies the CLI's own stdin to a guest's stdin, closing it at end-of-file.
///
/// The blocking reads happen on a plain thread of their own (never on the
/// two threads of Swift's cooperative pool); chunks cross to the async side
/// through an AsyncStream, one at a time: the reader waits until the guest
/// has taken each chunk, so a guest that reads slowly slows the reader
/// instead of growing a buffer or losing bytes.
enum StdinForwarder {
    static func start(to process: GuestProcess) -> Task<Void, Never> {
        let (chunks, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .unbounded)
        let taken = DispatchSemaphore(value: 0)
        let reader = Thread {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let got = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
                if got < 0 && errno == EINTR { continue }
                if got <= 0 { break }
                continuation.yield(Array(buffer[0..<got]))
                taken.wait()
            }
            continuation.finish()
        }
        reader.start()
        return Task {
            for await chunk in chunks {
                defer { taken.signal() }
                do { try await process.writeStdin(chunk) } catch { break }
            }
            process.closeStdin()
        }
    }
}
