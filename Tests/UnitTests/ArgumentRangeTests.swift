import Dispatch
import Glibc
import Testing

@testable import SecureExec

/// Every size, count and duration the API takes is range-checked with a
/// typed `.invalidArgument` before anything is sent, or taken as it is:
/// no value traps (README, "Limits and their defaults"). The pure rules,
/// without a sandbox; `ExtremeArgumentTests` calls the public API with the
/// same values as root.
@Suite("Extreme argument values: the rules", .timeLimit(.minutes(1)))
struct ArgumentRangeTests {
    /// Ceilings like a host's: hard RLIMIT_NOFILE 20000, no CPU limit.
    static let host = HostCeilings(openFiles: 20_000, cpuSeconds: HostCeilings.unlimited)

    /// Limits `validate` must refuse, each with a name for the report.
    static let refused: [(String, Limits)] = [
        ("workspaceBytes 0", Limits(workspaceBytes: 0)),
        ("workspaceBytes -1", Limits(workspaceBytes: -1)),
        ("workspaceBytes Int.min", Limits(workspaceBytes: .min)),
        ("tmpBytes 0", Limits(tmpBytes: 0)),
        ("tmpBytes Int.min", Limits(tmpBytes: .min)),
        ("memoryBytes 0", Limits(memoryBytes: 0)),
        ("memoryBytes Int.min", Limits(memoryBytes: .min)),
        ("maxProcesses 0", Limits(maxProcesses: 0)),
        ("maxProcesses -1", Limits(maxProcesses: -1)),
        ("maxProcesses Int.max", Limits(maxProcesses: .max)),
        ("maxProcesses past PID_MAX_LIMIT", Limits(maxProcesses: 4_194_305)),
        ("cpuTimePerProcess 0", Limits(cpuTimePerProcess: .zero)),
        ("cpuTimePerProcess 999 ms", Limits(cpuTimePerProcess: .milliseconds(999))),
        ("cpuTimePerProcess negative", Limits(cpuTimePerProcess: .seconds(Int64.min))),
        ("openFilesPerProcess 0", Limits(openFilesPerProcess: 0)),
        ("openFilesPerProcess Int.min", Limits(openFilesPerProcess: .min)),
        ("openFilesPerProcess Int.max", Limits(openFilesPerProcess: .max)),
        ("openFilesPerProcess above the host's hard limit", Limits(openFilesPerProcess: 20_001)),
        ("outputBytesPerStream -1", Limits(outputBytesPerStream: -1)),
        ("outputBytesPerStream Int.min", Limits(outputBytesPerStream: .min)),
        ("terminationGrace negative", Limits(terminationGrace: .nanoseconds(-1))),
        ("terminationGrace Int64.min", Limits(terminationGrace: .seconds(Int64.min))),
        ("inotifyInstances Int.max", Limits(inotifyInstances: .max)),
        ("inotifyInstances Int.min", Limits(inotifyInstances: .min)),
        ("inotifyWatches Int.max", Limits(inotifyWatches: .max)),
        ("inotifyWatches 0", Limits(inotifyWatches: 0)),
        ("fileOperationTimeout 0", Limits(fileOperationTimeout: .zero)),
        ("fileOperationTimeout Int64.min", Limits(fileOperationTimeout: .seconds(Int64.min))),
    ]

    @Test("limits out of range are refused with .invalidArgument naming the field")
    func refusedLimits() {
        for (name, limits) in Self.refused {
            let error = #expect(throws: SecureExecError.self, "\(name)") { try limits.validate(within: Self.host) }
            #expect(error?.code == .invalidArgument, "\(name): \(String(describing: error))")
            #expect(error?.step == "limits", "\(name): \(String(describing: error))")
            let field = String(name.prefix { $0 != " " })
            #expect(error?.message.contains(field) == true, "\(name): the message does not name \(field): \(String(describing: error))")
        }
    }

    @Test("the largest values the kernel takes are accepted: a huge size or duration means practically unlimited")
    func acceptedExtremes() throws {
        let largest = Limits(
            memoryBytes: .max, maxProcesses: Limits.maxProcessesCeiling, cpuTimePerProcess: .seconds(Int64.max),
            openFilesPerProcess: 20_000, workspaceBytes: .max, tmpBytes: .max, outputBytesPerStream: .max,
            terminationGrace: .seconds(Int64.max), inotifyInstances: 1 << 20, inotifyWatches: 1 << 24,
            fileOperationTimeout: .seconds(Int64.max))
        try largest.validate(within: Self.host)
        let smallest = Limits(
            memoryBytes: 16 << 20, maxProcesses: 16, cpuTimePerProcess: .seconds(1), openFilesPerProcess: 32,
            workspaceBytes: 1 << 20, tmpBytes: 1 << 20, outputBytesPerStream: 0, terminationGrace: .zero,
            inotifyInstances: 1, inotifyWatches: 1, fileOperationTimeout: .nanoseconds(1))
        try smallest.validate(within: Self.host)
        try Limits(memoryBytes: nil, maxProcesses: nil, cpuTimePerProcess: nil).validate(within: Self.host)
    }

    @Test("a CPU limit above the host's own hard RLIMIT_CPU is refused (a sandbox cannot raise it)")
    func cpuCeiling() throws {
        let capped = HostCeilings(openFiles: 20_000, cpuSeconds: 100)
        // The guest's hard limit is a second above its soft one.
        try Limits(cpuTimePerProcess: .seconds(99)).validate(within: capped)
        let error = #expect(throws: SecureExecError.self) { try Limits(cpuTimePerProcess: .seconds(100)).validate(within: capped) }
        #expect(error?.code == .invalidArgument)
        #expect(throws: SecureExecError.self) { try Limits(cpuTimePerProcess: .seconds(Int64.max)).validate(within: capped) }
    }

    @Test("this process's own ceilings are read")
    func currentCeilings() {
        let ceilings = HostCeilings.current()
        #expect(ceilings.openFiles >= 32)
        #expect(ceilings.cpuSeconds > 0)
    }

    @Test("a sub-second CPU limit of 1.5 s is rounded up to 2 s, not cut to 1 s; Int64.max stays below RLIM_INFINITY")
    func cpuRounding() {
        let records = InitProtocol.spawnRecords(SpawnRequest(), entry: nil, limits: Limits(cpuTimePerProcess: .milliseconds(1500)))
        #expect(records.contains("rlimit=\(RLIMIT_CPU.rawValue):2:3"), "\(records)")
        let huge = InitProtocol.spawnRecords(SpawnRequest(), entry: nil, limits: Limits(cpuTimePerProcess: .seconds(Int64.max)))
        #expect(huge.contains("rlimit=\(RLIMIT_CPU.rawValue):\(Int64.max - 1):\(Int64.max)"), "\(huge)")
    }

    @Test("durations become Dispatch intervals without trapping: clamped above, rounded up below a millisecond")
    func dispatchIntervals() {
        let forever = DispatchTimeInterval.clamped(.practicallyForever)
        #expect(DispatchTimeInterval.clamped(.seconds(Int64.max)) == forever)
        #expect(DispatchTimeInterval.clamped(Duration(secondsComponent: Int64.max, attosecondsComponent: 999_999_999_999_999_999)) == forever)
        #expect(DispatchTimeInterval.clamped(.seconds(Int64.min)) == .milliseconds(0))
        #expect(DispatchTimeInterval.clamped(.zero) == .milliseconds(0))
        #expect(DispatchTimeInterval.clamped(.nanoseconds(1)) == .milliseconds(1))
        #expect(DispatchTimeInterval.clamped(.microseconds(1500)) == .milliseconds(2))
        #expect(DispatchTimeInterval.clamped(.milliseconds(1500)) == .milliseconds(1500))
        // And a deadline from them: adding to the clock never overflows.
        _ = DispatchTime.now() + DispatchTimeInterval.clamped(.seconds(Int64.max))
    }

    @Test("deadlines from any duration: far ones are practically never, negative ones are now")
    func deadlines() {
        let now = ContinuousClock.now
        #expect(Duration.seconds(Int64.max).deadlineFromNow > now + .seconds(365 * 24 * 3600))
        #expect(Duration.seconds(Int64.min).deadlineFromNow <= ContinuousClock.now)
        #expect(Duration(secondsComponent: Int64.max, attosecondsComponent: 999_999_999_999_999_999).deadlineFromNow > now)
    }

    @Test("ports and timeouts: every Int and Duration outside the range is .invalidArgument")
    func portsAndTimeouts() {
        for port in [Int.min, -1, 0, 65536, Int.max] {
            let error = #expect(throws: SecureExecError.self, "port \(port)") { try NodeRuntime.validate(port: port) }
            #expect(error?.code == .invalidArgument)
        }
        for port in [1, 65535] { #expect(throws: Never.self) { try NodeRuntime.validate(port: port) } }
        for timeout in [Duration.zero, .nanoseconds(-1), .seconds(Int64.min)] {
            let error = #expect(throws: SecureExecError.self, "timeout \(timeout)") {
                try NodeRuntime.validate(timeout: timeout, name: "timeout")
            }
            #expect(error?.code == .invalidArgument)
        }
        for timeout in [Duration.nanoseconds(1), .seconds(Int64.max)] {
            #expect(throws: Never.self) { try NodeRuntime.validate(timeout: timeout, name: "timeout") }
        }
    }

    @Test("signal numbers at the ends of Int32 are .invalidArgument")
    func signalExtremes() {
        for number in [Int32.min, Int32.max, 0, 32, 65] {
            let error = #expect(throws: SecureExecError.self, "\(number)") { try Signal(number) }
            #expect(error?.code == .invalidArgument)
        }
    }
}
