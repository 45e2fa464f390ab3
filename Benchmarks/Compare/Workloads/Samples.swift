import CPhases

/// CLOCK_MONOTONIC now, in nanoseconds: the clock node's `process.hrtime`
/// reads too (SecureExec gives guests no time namespace), so a guest's own
/// timestamps and the host's fall on one timeline.
public func monotonicNanos() -> Int64 { cphases_monotonic_ns() }

/// CLOCK_REALTIME now, in nanoseconds: what node's `performance.timeOrigin` is read from.
public func wallNanos() -> Int64 { cphases_realtime_ns() }

/// The two clocks read back to back, to carry a wall-clock time onto the monotonic timeline.
public struct ClockPair: Sendable {
    public let monotonic: Int64
    public let wall: Int64

    public init() {
        monotonic = monotonicNanos()
        wall = wallNanos()
    }

    /// The monotonic time of the wall-clock instant `wall`.
    public func monotonic(ofWall wall: Int64) -> Int64 { monotonic + (wall - self.wall) }
}

/// Milliseconds between two `monotonicNanos()` readings.
public func milliseconds(from start: Int64, to end: Int64) -> Double { Double(end - start) / 1_000_000 }

/// Measurements of one quantity, with the order statistics the report uses.
public struct Samples: Sendable {
    public private(set) var values: [Double] = []

    public init(_ values: [Double] = []) { self.values = values }

    public mutating func add(_ value: Double) { values.append(value) }
    public mutating func add(contentsOf other: Samples) { values += other.values }

    public var count: Int { values.count }
    public var isEmpty: Bool { values.isEmpty }
    public var median: Double { percentile(50) }
    public var mean: Double { values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count) }

    /// The p-th percentile (nearest rank on the sorted values); NaN when empty.
    public func percentile(_ p: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        if p >= 100 { return sorted[sorted.count - 1] }
        if p == 50 && sorted.count % 2 == 0 {
            return (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
        return sorted[max(0, min(sorted.count - 1, rank))]
    }
}
