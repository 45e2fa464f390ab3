import Dispatch

/// Waits until a descriptor is writable (or 50 ms pass, so callers re-check their state).
enum FDReadiness {
    static func writable(_ fd: Int32, queue: DispatchQueue) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let source = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
            let box = DispatchSourceBox(source: source)
            let once = Once()
            let finish: @Sendable () -> Void = {
                if once.claim() { box.cancel() }
            }
            source.setEventHandler(handler: finish)
            // The caller may close the fd right after; Dispatch is done with it
            // only once the cancel handler has run.
            source.setCancelHandler { continuation.resume() }
            source.resume()
            queue.asyncAfter(deadline: .now() + .milliseconds(50), execute: finish)
        }
    }
}
