import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Ctrl-C and SIGTERM while a guest runs: the first asks it to stop, the
/// second kills it at once.
final class InterruptHandler: Sendable {
    private let sources = Mutex<[DispatchSourceSignalBox]>([])
    private let count = Atomic<Int>(0)

    func install(first: @escaping @Sendable () -> Void, second: @escaping @Sendable () -> Void) {
        let queue = DispatchQueue(label: "secure-exec.signals")
        var made: [DispatchSourceSignalBox] = []
        for signal in [SIGINT, SIGTERM] {
            Glibc.signal(signal, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signal, queue: queue)
            source.setEventHandler { [self] in
                let seen = self.count.wrappingAdd(1, ordering: .relaxed).newValue
                if seen == 1 { first() } else { second() }
            }
            source.resume()
            made.append(DispatchSourceSignalBox(source: source))
        }
        sources.withLock { $0 = made }
    }

    func remove() {
        sources.withLock { sources in
            sources.forEach { $0.source.cancel() }
            sources = []
        }
    }
}

/// Dispatch sources are thread-safe; the overlay just lacks the Sendable mark.
struct DispatchSourceSignalBox: @unchecked Sendable {
    let source: any DispatchSourceSignal
}
