import ArgumentParser
import Foundation
import SecureExec

/// Flags every command that builds a sandbox shares.
struct SandboxOptions: ParsableArguments {
    @Flag(name: .customLong("allow-net"), help: "Let guests use the sandbox's loopback network.")
    var allowNetwork = false

    @Flag(name: .customLong("allow-child-process"), help: "Let guests start child node processes.")
    var allowChildProcess = false

    @Option(name: .customLong("env"), help: ArgumentHelp("Set a guest environment variable.", valueName: "K=V"))
    var environment: [String] = []

    @Option(name: .customLong("mount"), help: ArgumentHelp("Show a host path in the sandbox (read-only unless :rw).", valueName: "HOST:GUEST[:rw]"))
    var mounts: [String] = []

    @Option(name: .customLong("node-modules"), help: ArgumentHelp("Mount a host node_modules directory at /workspace/node_modules.", valueName: "DIR"))
    var nodeModules: String?

    @Option(name: .customLong("project-mode"), help: ArgumentHelp("How a project directory becomes /workspace: overlay (the guest's changes stay in the sandbox) or rw (edits in place).", valueName: "overlay|rw"))
    var projectMode: String = "overlay"

    @Option(help: ArgumentHelp("Memory for the whole sandbox, e.g. 256M or 1G.", valueName: "SIZE"))
    var memory: String?

    @Option(help: ArgumentHelp("CPU time per process, e.g. 10s or 5m.", valueName: "DURATION"))
    var cpu: String?

    @Option(help: ArgumentHelp("Processes and threads in the sandbox.", valueName: "N"))
    var pids: Int?

    func parsedEnvironment() throws -> [String: String] {
        var result: [String: String] = [:]
        for entry in environment {
            guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else {
                throw ValidationError("--env expects K=V, got \(entry.debugDescription)")
            }
            result[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
        }
        return result
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
        if let memory {
            guard let bytes = Units.bytes(memory) else {
                throw ValidationError("--memory expects a size like 256M or 1G, got \(memory.debugDescription)")
            }
            limits.memoryBytes = bytes
        }
        if let cpu {
            guard let duration = Units.duration(cpu) else {
                throw ValidationError("--cpu expects a duration like 10s or 5m, got \(cpu.debugDescription)")
            }
            limits.cpuTimePerProcess = duration
        }
        if let pids {
            guard pids > 0 else { throw ValidationError("--pids must be positive") }
            limits.maxProcesses = pids
        }
        return limits
    }

    var permissions: Permissions {
        Permissions(network: allowNetwork ? .allow : .deny, childProcess: allowChildProcess ? .allow : .deny)
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
        if case .directory(let path) = project { workspace = Workspace(host: path, mode: try workspaceMode()) }
        do {
            return try await NodeRuntime.create(
                permissions: permissions, limits: try limits(), mounts: try parsedMounts(), workspace: workspace,
                nodeModules: try validateNodeModules())
        } catch let error as SecureExecError where error.code == .invalidArgument {
            throw CLIFailure(message: error.message, code: ExitCodes.usage)
        } catch let error as SecureExecError {
            throw CLIFailure(message: "could not create the sandbox: \(error)", code: ExitCodes.unavailable)
        }
    }

    /// Starts `project`'s code or entry file in `runtime`, its output to `output`.
    func start(
        _ project: Project, in runtime: NodeRuntime, arguments: [String], timeout: Duration?, output: EventPrinter
    ) async throws -> GuestProcess {
        switch project {
        case .code(let code):
            return try await runtime.spawn(
                code, arguments: arguments, environment: try parsedEnvironment(), timeout: timeout,
                onStdout: { output.stdout($0) }, onStderr: { output.stderr($0) })
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

/// Parses sizes ("256M") and durations ("10s").
enum Units {
    static func bytes(_ text: String) -> Int? {
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        guard let last = text.uppercased().last else { return nil }
        if let scale = units[last], let number = Int(text.dropLast()), number > 0 { return number * scale }
        if let number = Int(text), number > 0 { return number }
        return nil
    }

    static func duration(_ text: String) -> Duration? {
        let units: [String: Int] = ["ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000]
        for (suffix, scale) in units.sorted(by: { $0.key.count > $1.key.count }) where text.hasSuffix(suffix) {
            guard let number = Int(text.dropLast(suffix.count)), number > 0 else { return nil }
            return .milliseconds(number * scale)
        }
        if let seconds = Int(text), seconds > 0 { return .seconds(seconds) }
        return nil
    }
}
