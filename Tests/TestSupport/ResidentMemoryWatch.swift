import Synchronization

/// This process's resident memory over a stretch of a test: at the start,
/// and the highest of the samples since.
///
/// Samples are taken by `sample()` as the work goes, or every `interval`
/// by a task of its own when created with `sampling(every:)` (a
/// measurement, not a synchronisation); `stop()` takes a last sample and
/// ends that task.
public final class ResidentMemoryWatch: Sendable {
    private struct State {
        var peak: Int
        var sampling = true
    }

    /// VmRSS in bytes when the watch was made.
    public let start: Int
    private let state: Mutex<State>
    private let sampler = Mutex<Task<Void, Never>?>(nil)

    public init() {
        start = HostCensus.residentBytes()
        state = Mutex(State(peak: start))
    }

    /// A watch that also samples every `interval` until `stop()` (for at most
    /// `limit`, so a test that fails before `stop()` leaves no endless sampler behind).
    public static func sampling(every interval: Duration = .milliseconds(20), limit: Duration = .seconds(180)) -> ResidentMemoryWatch {
        let watch = ResidentMemoryWatch()
        let task = Task {
            let deadline = ContinuousClock.now.advanced(by: limit)
            while watch.state.withLock({ $0.sampling }) && ContinuousClock.now < deadline {
                watch.sample()
                try? await Task.sleep(for: interval)
            }
        }
        watch.sampler.withLock { $0 = task }
        return watch
    }

    /// Takes one sample and returns it (VmRSS in bytes).
    @discardableResult
    public func sample() -> Int {
        let now = HostCensus.residentBytes()
        state.withLock { $0.peak = max($0.peak, now) }
        return now
    }

    /// The highest sample so far (the start included).
    public var peak: Int { state.withLock { $0.peak } }

    /// How far the peak rose above the start.
    public var peakGrowth: Int { peak - start }

    /// Takes a last sample and ends the sampling task, if any.
    public func stop() async {
        sample()
        state.withLock { $0.sampling = false }
        await sampler.withLock { $0 }?.value
    }
}
