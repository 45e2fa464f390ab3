#if canImport(Glibc)
import Glibc
#endif

/// What a sandbox can never exceed on this host: a user namespace cannot
/// raise a hard rlimit (that takes CAP_SYS_RESOURCE in the host's
/// namespace), so a guest's hard limit must fit under the supervisor's.
struct HostCeilings: Sendable {
    /// This process's hard RLIMIT_NOFILE.
    var openFiles: UInt64
    /// This process's hard RLIMIT_CPU in seconds (`unlimited` when none).
    var cpuSeconds: UInt64

    /// RLIM_INFINITY (all ones), which Swift cannot import.
    static let unlimited = UInt64.max

    static func current() -> HostCeilings {
        var files = rlimit()
        var cpu = rlimit()
        let filesRead = getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &files) == 0
        let cpuRead = getrlimit(__rlimit_resource_t(RLIMIT_CPU.rawValue), &cpu) == 0
        return HostCeilings(
            openFiles: filesRead ? UInt64(files.rlim_max) : 1 << 20, cpuSeconds: cpuRead ? UInt64(cpu.rlim_max) : unlimited)
    }
}

extension Limits {
    /// The most processes a pids cgroup takes (the kernel's PID_MAX_LIMIT).
    static let maxProcessesCeiling = 4_194_304

    /// Checks every field before anything is created: a value out of range
    /// is `.invalidArgument` naming the field, never a trap or a failure
    /// later in setup. Sizes and durations have no upper bound of their own
    /// where the kernel takes any value (a huge one means "practically
    /// unlimited"); counts the kernel caps are capped here.
    func validate(within ceilings: HostCeilings) throws(SecureExecError) {
        func refuse(_ message: String) -> SecureExecError {
            SecureExecError(.invalidArgument, message, step: "limits")
        }
        guard workspaceBytes >= 1 << 20, tmpBytes >= 1 << 20 else {
            throw refuse("workspace and /tmp must be at least 1 MiB (workspaceBytes \(workspaceBytes), tmpBytes \(tmpBytes))")
        }
        guard terminationGrace >= .zero else { throw refuse("terminationGrace must not be negative, got \(terminationGrace)") }
        if let memory = memoryBytes, memory < 16 << 20 {
            throw refuse("memoryBytes must be at least 16 MiB (node needs more to start), got \(memory)")
        }
        if let processes = maxProcesses, !(16...Self.maxProcessesCeiling).contains(processes) {
            throw refuse(
                "maxProcesses must be 16...\(Self.maxProcessesCeiling) (node runs about 10 threads; the kernel's pid limit), got \(processes); nil for no limit"
            )
        }
        if let cpu = cpuTimePerProcess {
            guard cpu >= .seconds(1) else { throw refuse("cpuTimePerProcess must be at least 1 second, got \(cpu)") }
            // The hard limit sits a second above the soft one (InitProtocol.spawnRecords).
            let hard = InitProtocol.wholeSeconds(cpu, within: 1...UInt64(Int64.max - 1)) + 1
            guard ceilings.cpuSeconds == HostCeilings.unlimited || hard <= ceilings.cpuSeconds else {
                throw refuse(
                    "cpuTimePerProcess must stay under this process's hard RLIMIT_CPU (\(ceilings.cpuSeconds) s), got \(cpu)")
            }
        }
        guard openFilesPerProcess >= 32 else { throw refuse("openFilesPerProcess must be at least 32, got \(openFilesPerProcess)") }
        guard UInt64(openFilesPerProcess) <= ceilings.openFiles else {
            throw refuse(
                "openFilesPerProcess must be at most \(ceilings.openFiles) (this process's hard RLIMIT_NOFILE, which a sandbox cannot raise), got \(openFilesPerProcess)"
            )
        }
        guard outputBytesPerStream >= 0 else { throw refuse("outputBytesPerStream must not be negative, got \(outputBytesPerStream)") }
        guard (1...1 << 20).contains(inotifyInstances), (1...1 << 24).contains(inotifyWatches) else {
            throw refuse("inotifyInstances must be 1...1048576 and inotifyWatches 1...16777216")
        }
        guard fileOperationTimeout > .zero else { throw refuse("fileOperationTimeout must be positive, got \(fileOperationTimeout)") }
    }
}
