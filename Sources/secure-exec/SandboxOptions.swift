import ArgumentParser
import Foundation
import SecureExec

/// Flags every command that builds a sandbox shares.
struct SandboxOptions: ParsableArguments {
    @Flag(name: .customLong("allow-net"), help: "Let guests use the sandbox's loopback network.")
    var allowNetwork = false

    @Flag(name: .customLong("allow-child-process"), help: "Let guests start child processes (node, and the root's shell and tools).")
    var allowChildProcess = false

    @Option(name: .customLong("root"), help: ArgumentHelp("What the sandbox's read-only root holds: standard (node, npm, a shell and common tools), minimal (node only), host (the host's /usr), or a prepared root filesystem DIR.", valueName: "standard|minimal|host|DIR"))
    var root: String = "standard"

    @Option(name: .customLong("command"), help: ArgumentHelp("Run a command line with the root's /bin/sh -c instead of node (e.g. 'npm run dev'); allows child processes.", valueName: "CMD"))
    var command: String?

    @Option(name: .customLong("env"), help: ArgumentHelp("Set a guest environment variable.", valueName: "K=V"))
    var environment: [String] = []

    @Option(name: .customLong("mount"), help: ArgumentHelp("Show a host path in the sandbox (read-only unless :rw).", valueName: "HOST:GUEST[:rw]"))
    var mounts: [String] = []

    @Option(name: .customLong("node-modules"), help: ArgumentHelp("Mount a host node_modules directory at /workspace/node_modules.", valueName: "DIR"))
    var nodeModules: String?

    @Option(name: .customLong("project-mode"), help: ArgumentHelp("How a project directory becomes /workspace: overlay (the guest's changes stay in the sandbox) or rw (edits in place).", valueName: "overlay|rw"))
    var projectMode: String = "overlay"

    @Option(help: ArgumentHelp("Memory for the whole sandbox, 16M to 1T, e.g. 256M or 1G (default 512M).", valueName: "SIZE"))
    var memory: String?

    @Option(help: ArgumentHelp("CPU time per process, 1s to 365d, e.g. 10s or 5m (default 1h).", valueName: "DURATION"))
    var cpu: String?

    @Option(help: ArgumentHelp("Processes and threads in the sandbox, 16 to 4194304 (default 256).", valueName: "N"))
    var pids: String?

    @Option(help: ArgumentHelp("How long a guest may take to exit after SIGTERM before it is killed, 0s to 1h (default 1s).", valueName: "DURATION"))
    var grace: String?

    @Option(name: .customLong("allow-host"), help: ArgumentHelp("Let guests connect out to PATTERN: a domain, *.domain, an IP or a CIDR, on PORTS (default 443,80); IPv6 with ports in brackets. Repeatable; implies --allow-net.", valueName: "PATTERN[:PORT[,PORT...]]"))
    var allowHosts: [String] = []

    @Option(name: .customLong("allow-hosts-file"), help: ArgumentHelp("Read --allow-host patterns from FILE, one per line (# starts a comment); serve reads it again on SIGHUP.", valueName: "FILE"))
    var allowHostsFile: String?

    /// Checks everything that needs no sandbox; `validate()` of each command calls it.
    func validate(guestArguments: [String]) throws {
        _ = try egressPolicy()
        let environment = try parsedEnvironment()
        try Self.checkSpawnRequest(environment: environment, arguments: guestArguments)
        _ = try parsedMounts()
        _ = try limits()
        _ = try workspaceMode()
        _ = try validateNodeModules()
        _ = try rootImage()
        if let command {
            guard !command.isEmpty, !command.contains("\0") else {
                throw ValidationError("--command expects a command line (no NUL), got \(command.debugDescription)")
            }
            guard guestArguments.isEmpty else {
                throw ValidationError("arguments after -- go to a node program; with --command, put them in the command line")
            }
            try Self.checkSpawnRequest(environment: try parsedEnvironment(), arguments: [command])
        }
    }

    /// `--root`: an image's name, or a directory holding a prepared root filesystem.
    func rootImage() throws -> RootImage {
        switch root {
        case "standard": return .standard
        case "minimal": return .minimal
        case "host": return .host
        default:
            let path = Project.absolutePath(root)
            var isDirectory: ObjCBool = false
            guard !root.isEmpty, FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue
            else {
                throw ValidationError("--root expects standard, minimal, host or a directory, got \(root.debugDescription)")
            }
            return .directory(path)
        }
    }

    func parsedEnvironment() throws -> [String: String] {
        var result: [String: String] = [:]
        for entry in environment {
            guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else {
                throw ValidationError("--env expects K=V with a non-empty K, got \(entry.debugDescription)")
            }
            let key = String(entry[..<equals])
            let value = String(entry[entry.index(after: equals)...])
            guard !key.contains("\0"), !value.contains("\0") else {
                throw ValidationError("--env \(key.debugDescription): names and values cannot contain NUL")
            }
            result[key] = value
        }
        return result
    }

    /// The guest's arguments and environment travel to the sandbox in one
    /// 64 KiB message: refuse before anything starts when they cannot fit.
    static func checkSpawnRequest(environment: [String: String], arguments: [String]) throws {
        for argument in arguments where argument.contains("\0") {
            throw ValidationError("guest argument \(argument.debugDescription) contains NUL")
        }
        // Each travels as one NUL-terminated record: "env=K=V" or "arg=A".
        let environmentBytes = environment.reduce(0) { $0 + 6 + $1.key.utf8.count + $1.value.utf8.count }
        let argumentBytes = arguments.reduce(0) { $0 + 5 + $1.utf8.count }
        guard environmentBytes + argumentBytes <= Units.maxSpawnRecordBytes else {
            throw ValidationError(
                "--env and the guest's arguments take \(environmentBytes + argumentBytes) bytes; together they must stay under \(Units.describe(bytes: Units.maxSpawnRecordBytes))")
        }
    }

    func parsedMounts() throws -> [Mount] {
        try mounts.map { text in
            let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2 || (parts.count == 3 && parts[2] == "rw"), !parts[0].isEmpty, !parts[1].isEmpty else {
                throw ValidationError("--mount expects HOST:GUEST or HOST:GUEST:rw, got \(text.debugDescription)")
            }
            let absolute = Project.absolutePath(parts[0])
            guard FileManager.default.fileExists(atPath: absolute) else {
                throw ValidationError("--mount: host path \(parts[0].debugDescription) does not exist")
            }
            return Mount(host: absolute, guest: parts[1], readOnly: parts.count == 2)
        }
    }

    func limits() throws -> Limits {
        var limits = Limits()
        if let memory { limits.memoryBytes = try Units.size(memory, flag: "--memory", in: Units.memoryRange) }
        if let cpu {
            // RLIMIT_CPU counts whole seconds: a fraction rounds up.
            let duration = try Units.duration(cpu, flag: "--cpu", in: .seconds(1)...Units.maxDuration)
            let (seconds, attoseconds) = duration.components
            limits.cpuTimePerProcess = .seconds(seconds + (attoseconds > 0 ? 1 : 0))
        }
        if let pids { limits.maxProcesses = try Units.count(pids, flag: "--pids", in: Units.pidsRange) }
        if let grace { limits.terminationGrace = try Units.duration(grace, flag: "--grace", in: .zero...Units.maxGrace) }
        return limits
    }

    /// A shell forks, so `--command` allows child processes.
    func permissions() throws -> Permissions {
        let network: NetworkAccess
        if let policy = try egressPolicy() {
            network = .allow(egress: policy)
        } else {
            network = allowNetwork ? .allow : .deny
        }
        return Permissions(network: network, childProcess: allowChildProcess || command != nil ? .allow : .deny)
    }

    /// `--allow-host` and `--allow-hosts-file` as one policy; nil when neither is given.
    func egressPolicy() throws -> EgressPolicy? {
        try Self.egressPolicy(allowHosts: allowHosts, file: allowHostsFile)
    }

    static func egressPolicy(allowHosts: [String], file: String?) throws -> EgressPolicy? {
        guard !allowHosts.isEmpty || file != nil else { return nil }
        var patterns = allowHosts
        if let file { patterns += try readPatterns(file) }
        do {
            return try EgressPolicy(allow: patterns)
        } catch {
            throw ValidationError("--allow-host: \(error.message)")
        }
    }

    /// Prints every refused egress attempt until the runtime is disposed.
    static func printEgressEvents(of runtime: NodeRuntime, to output: EventPrinter) -> Task<Void, Never> {
        let events = runtime.egressEvents
        return Task {
            for await denied in events { output.egress(denied) }
        }
    }

    /// The patterns of an allow-hosts file: one per line, blank lines and `#` comments skipped.
    static func readPatterns(_ path: String) throws -> [String] {
        guard let text = try? String(contentsOfFile: Project.absolutePath(path), encoding: .utf8) else {
            throw ValidationError("--allow-hosts-file: cannot read \(path.debugDescription)")
        }
        return text.split(whereSeparator: \.isNewline).compactMap { line in
            let pattern = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let trimmed = pattern.trimmingCharacters(in: .whitespaces)
            return trimmed.isEmpty ? nil : trimmed
        }
    }

    func workspaceMode() throws -> Workspace.Mode {
        switch projectMode {
        case "overlay": return .overlay
        case "rw": return .readWrite
        default: throw ValidationError("--project-mode expects overlay or rw, got \(projectMode.debugDescription)")
        }
    }

    /// A runtime for `project`: a directory becomes its workspace.
    ///
    /// Bad input the API finds (a symlinked path, a guest path it refuses)
    /// is `.invalidArgument` before anything exists: exit 64, like a bad flag.
    func makeRuntime(for project: Project) async throws -> NodeRuntime {
        var workspace: Workspace?
        var mounts = try parsedMounts()
        switch project {
        case .directory(let path): workspace = Workspace(host: path, mode: try workspaceMode())
        case .file(let path): mounts.insert(Project.scriptMount(path).mount, at: 0)
        case .code, .empty: break
        }
        do {
            return try await NodeRuntime.create(
                root: try rootImage(), permissions: try permissions(), limits: try limits(), mounts: mounts, workspace: workspace,
                nodeModules: try validateNodeModules())
        } catch let error as SecureExecError where error.code == .invalidArgument {
            throw CLIFailure(message: error.message, code: ExitCodes.usage)
        } catch let error as SecureExecError {
            throw CLIFailure(message: "could not create the sandbox: \(error)", code: ExitCodes.unavailable)
        }
    }

    /// Starts `--command`, or else `project`'s code or entry file, in `runtime`, its output to `output`.
    func start(
        _ project: Project, in runtime: NodeRuntime, arguments: [String], timeout: Duration?, output: EventPrinter
    ) async throws -> GuestProcess {
        if let command {
            return try await runtime.spawnCommand(
                command, environment: try parsedEnvironment(), timeout: timeout, onStdout: { output.stdout($0) },
                onStderr: { output.stderr($0) })
        }
        switch project {
        case .empty:
            throw ValidationError("nothing to run: give a FILE, a directory, -e CODE or --command")
        case .code(let code):
            return try await runtime.spawn(
                code, arguments: arguments, environment: try parsedEnvironment(), timeout: timeout,
                onStdout: { output.stdout($0) }, onStderr: { output.stderr($0) })
        case .file(let path):
            return try await runtime.spawnFile(
                Project.scriptMount(path).guestPath, arguments: arguments, environment: try parsedEnvironment(),
                timeout: timeout, onStdout: { output.stdout($0) }, onStderr: { output.stderr($0) })
        case .directory(let path):
            let entry = try await Project.entry(in: runtime, project: path)
            return try await runtime.spawnFile(
                entry, arguments: arguments, environment: try parsedEnvironment(), timeout: timeout,
                onStdout: { output.stdout($0) }, onStderr: { output.stderr($0) })
        }
    }

    func validateNodeModules() throws -> String? {
        guard let nodeModules else { return nil }
        let path = Project.absolutePath(nodeModules)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("--node-modules: \(nodeModules.debugDescription) is not a directory")
        }
        return path
    }
}

/// Parses and prints sizes ("256M") and durations ("10s"), with overflow
/// checks and the CLI's bounds, so no input can trap.
///
/// Sizes: a whole number of bytes, or with K, M, G or T (powers of 1024; a
/// trailing "B" or "iB" is allowed: 256M, 256MB, 256MiB). Durations: a whole
/// number with ms, s, m, h or d; a bare number is seconds.
enum Units {
    /// The smallest and largest `--memory` (node needs about 16 MiB to start).
    static let memoryRange = (16 << 20)...(1 << 40)
    /// The most `--pids` (the kernel's own ceiling, PID_MAX_LIMIT); node alone runs about 10 threads.
    static let pidsRange = 16...4_194_304
    /// The longest `--timeout`, `--cpu` or `--ready-timeout`: one year.
    static let maxDuration: Duration = .seconds(365 * 24 * 3600)
    /// The longest `--grace`: one hour.
    static let maxGrace: Duration = .seconds(3600)
    /// The guest's spawn request (arguments and environment) travels in one
    /// 64 KiB message; this leaves room for its header and the runtime's own records.
    static let maxSpawnRecordBytes = 60 << 10

    enum Parsed<Value> {
        case value(Value)
        /// Not a number with a known unit.
        case malformed
        /// A number too large to represent at all.
        case tooLarge
    }

    static func bytes(_ text: String) -> Parsed<Int> {
        var body = Substring(text.uppercased())
        var binarySuffix = false
        if body.hasSuffix("IB") {
            body = body.dropLast(2)
            binarySuffix = true
        } else if body.hasSuffix("B") {
            body = body.dropLast()
        }
        let scales: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var scale = 1
        if let last = body.last, let unit = scales[last] {
            scale = unit
            body = body.dropLast()
        } else if binarySuffix {
            return .malformed  // "iB" needs a unit before it: "256MiB", not "256iB"
        }
        switch number(body) {
        case .value(let count):
            let (product, overflow) = count.multipliedReportingOverflow(by: scale)
            return overflow ? .tooLarge : .value(product)
        case .malformed: return .malformed
        case .tooLarge: return .tooLarge
        }
    }

    static func duration(_ text: String) -> Parsed<Duration> {
        let scales: [(String, Int)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        var body = Substring(text.lowercased())
        var scale = 1000
        for (suffix, unit) in scales where body.hasSuffix(suffix) {
            // "ms" is tried before "s" and "m" because it comes first.
            scale = unit
            body = body.dropLast(suffix.count)
            break
        }
        switch number(body) {
        case .value(let count):
            let (milliseconds, overflow) = count.multipliedReportingOverflow(by: scale)
            return overflow ? .tooLarge : .value(.milliseconds(milliseconds))
        case .malformed: return .malformed
        case .tooLarge: return .tooLarge
        }
    }

    /// A plain non-negative decimal integer (digits only: no sign, no spaces).
    static func number(_ text: Substring) -> Parsed<Int> {
        guard !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return .malformed }
        guard let value = Int(text) else { return .tooLarge }
        return .value(value)
    }

    /// A size flag's value within `range`, or a one-line ValidationError.
    static func size(_ text: String, flag: String, in range: ClosedRange<Int>) throws -> Int {
        switch bytes(text) {
        case .value(let value) where range.contains(value): return value
        case .malformed: throw ValidationError("\(flag) expects a size like 256M or 1G, got \(text.debugDescription)")
        default:
            throw ValidationError(
                "\(flag) must be between \(describe(bytes: range.lowerBound)) and \(describe(bytes: range.upperBound)), got \(text.debugDescription)")
        }
    }

    /// A duration flag's value within `range`, or a one-line ValidationError.
    static func duration(_ text: String, flag: String, in range: ClosedRange<Duration>) throws -> Duration {
        switch duration(text) {
        case .value(let value) where range.contains(value): return value
        case .malformed: throw ValidationError("\(flag) expects a duration like 10s, 500ms or 5m, got \(text.debugDescription)")
        default:
            throw ValidationError(
                "\(flag) must be between \(describe(range.lowerBound)) and \(describe(range.upperBound)), got \(text.debugDescription)")
        }
    }

    /// A count flag's value within `range`, or a one-line ValidationError.
    static func count(_ text: String, flag: String, in range: ClosedRange<Int>) throws -> Int {
        switch number(Substring(text)) {
        case .value(let value) where range.contains(value): return value
        case .malformed: throw ValidationError("\(flag) expects a whole number, got \(text.debugDescription)")
        default: throw ValidationError("\(flag) must be between \(range.lowerBound) and \(range.upperBound), got \(text.debugDescription)")
        }
    }

    /// "256 MiB", "1 GiB", "1536 KiB", "100 bytes".
    static func describe(bytes: Int) -> String {
        for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] where bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return "\(bytes >> shift) \(unit)"
        }
        return bytes == 1 ? "1 byte" : "\(bytes) bytes"
    }

    /// "1s", "300ms", "5m", "2h", "365d" (the largest unit that divides it exactly).
    static func describe(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let milliseconds = seconds.multipliedReportingOverflow(by: 1000).partialValue + attoseconds / 1_000_000_000_000_000
        if milliseconds == 0 { return "0s" }
        for (unit, name) in [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")] where milliseconds % Int64(unit) == 0 {
            return "\(milliseconds / Int64(unit))\(name)"
        }
        return "\(milliseconds)ms"
    }
}
