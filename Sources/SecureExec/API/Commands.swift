#if canImport(Glibc)
import Glibc
#endif

extension NodeRuntime {
    /// Runs `command` with the root's `/bin/sh -c`, the way a package script
    /// or a terminal runs it: `npm run dev`, `npx vite`, `ls | wc -l`.
    ///
    /// Returns as soon as the shell runs, with the same `GuestProcess` as
    /// `spawn` (output callbacks or sequences, stdin, `kill`, `wait`, and
    /// the same limits and terminations). The environment is `environment`
    /// over the root's defaults (PATH, HOME=/workspace, TMPDIR=/tmp, and
    /// where the root has npm, `npm_config_cache=/tmp/.npm`, no update
    /// check and no host global config). `kill()` signals the shell's process, in which the line's
    /// last command runs (sh execs it), so `npm run dev` gets the signal
    /// itself and npm passes it on to the script's server.
    ///
    /// - Parameters:
    ///   - command: the command line, as `/bin/sh -c` reads it.
    ///   - environment: variables over the defaults (a name given here wins).
    ///   - workingDirectory: the shell's cwd (default `/workspace`).
    ///   - timeout: the shell is killed when it runs longer and ends `.timedOut`.
    ///   - onStdout: gets each chunk of stdout (nil: `process.stdout` carries it).
    ///   - onStderr: gets each chunk of stderr (nil: `process.stderr` carries it).
    /// - Throws: `.invalidArgument` when the runtime was created without
    ///   `Permissions(childProcess: .allow)` (a shell forks), before anything
    ///   starts, and for bad input as `spawn`; `.spawnFailed` when the root has
    ///   no shell (`.minimal`, or a `.directory` without `/bin/sh`), saying so;
    ///   `.disposed` after `dispose()`.
    public func spawnCommand(
        _ command: String, environment: [String: String] = [:], workingDirectory: String = "/workspace",
        timeout: Duration? = nil, onStdout: (@Sendable ([UInt8]) -> Void)? = nil,
        onStderr: (@Sendable ([UInt8]) -> Void)? = nil
    ) async throws(SecureExecError) -> GuestProcess {
        try checkCommand(command, call: "spawnCommand")
        do {
            return try await launch(
                Self.shellRequest, arguments: ["-c", command], environment: environment,
                workingDirectory: workingDirectory, timeout: timeout, onStdout: onStdout, onStderr: onStderr)
        } catch {
            throw explained(error, executable: Self.shell)
        }
    }

    /// Runs one program of the root or a mount (`/usr/bin/npx`, a tool in
    /// `/workspace/node_modules/.bin`), without a shell, like `spawn`
    /// otherwise.
    ///
    /// `path` is a guest path; a script runs with the interpreter its `#!`
    /// line names (which must exist in the root: `#!/usr/bin/env node` does
    /// in every image but `.minimal`). The program sees `path` as its
    /// `argv[0]`, then `arguments`.
    ///
    /// - Throws: `.invalidArgument` without `Permissions(childProcess: .allow)`,
    ///   for a `path` that is not absolute and normalized, and for bad input
    ///   as `spawn`; `.spawnFailed` naming the path when it does not exist, is
    ///   not executable (or sits on a noexec mount: `/tmp`, an empty
    ///   `/workspace`), or is a script whose interpreter the root lacks (the
    ///   message names it); `.disposed` after `dispose()`.
    public func spawnExecutable(
        _ path: String, arguments: [String] = [], environment: [String: String] = [:],
        workingDirectory: String = "/workspace", timeout: Duration? = nil,
        onStdout: (@Sendable ([UInt8]) -> Void)? = nil, onStderr: (@Sendable ([UInt8]) -> Void)? = nil
    ) async throws(SecureExecError) -> GuestProcess {
        try requireChildProcess("spawnExecutable", starts: "a program")
        try Self.validate(guestPath: path, name: "path")
        var request = SpawnRequest()
        request.executable = path
        do {
            return try await launch(
                request, arguments: arguments, environment: environment, workingDirectory: workingDirectory,
                timeout: timeout, onStdout: onStdout, onStderr: onStderr)
        } catch {
            throw explained(error, executable: path)
        }
    }

    /// Runs `command` with `/bin/sh -c` to completion, like `exec` does for
    /// code: its stdout, stderr, how it ended and how long it took. After
    /// `timeout` (default 60 s) the shell is killed and the result says
    /// `.timedOut` (this does not throw).
    ///
    /// - Throws: what `spawnCommand` throws; `.cancelled` when the calling
    ///   task is cancelled (the shell is ended first).
    public func execCommand(
        _ command: String, environment: [String: String] = [:], workingDirectory: String = "/workspace",
        stdin: [UInt8]? = nil, timeout: Duration = .seconds(60)
    ) async throws(SecureExecError) -> ExecResult {
        try checkCommand(command, call: "execCommand")
        do {
            return try await runToCompletion(
                Self.shellRequest, arguments: ["-c", command], environment: environment,
                workingDirectory: workingDirectory, nodeOptions: [], stdin: stdin, timeout: timeout)
        } catch {
            throw explained(error, executable: Self.shell)
        }
    }

    static let shell = "/bin/sh"

    private static var shellRequest: SpawnRequest {
        var request = SpawnRequest()
        request.executable = shell
        return request
    }

    private func checkCommand(_ command: String, call: String) throws(SecureExecError) {
        try requireChildProcess(call, starts: "a shell")
        guard !command.isEmpty else {
            throw SecureExecError(.invalidArgument, "\(call) needs a command line; got an empty one", step: call)
        }
        if root.hasShell == false {
            throw SecureExecError(
                .spawnFailed,
                "the \(root.name) root has no shell: \(call) runs \(Self.shell) -c, which root: .standard and .host have (and a .directory root that holds one)",
                step: call, errno: ENOENT)
        }
    }

    private func requireChildProcess(_ call: String, starts what: String) throws(SecureExecError) {
        guard permissions.childProcess == .allow else {
            throw SecureExecError(
                .invalidArgument,
                "\(call) starts \(what), which needs the childProcess permission: create the runtime with permissions: Permissions(childProcess: .allow)",
                step: "check permissions")
        }
    }

    /// Init's answer to a failed start, said in terms of the program. Init
    /// names the path in the step: "open <path>" when the program could not
    /// be opened, "missing interpreter <path>" when the program a `#!` line
    /// or an ELF loader entry asks for does not exist (`InitProtocol.spawnFailure`).
    private func explained(_ error: SecureExecError, executable path: String) -> SecureExecError {
        guard error.code == .spawnFailed, let step = error.step, let code = error.errno else { return error }
        let what = path == Self.shell ? "the shell \(path)" : path
        let missingInterpreter = "missing interpreter "
        let why: String
        if step.hasPrefix(missingInterpreter) {
            let interpreter = step.dropFirst(missingInterpreter.count)
            why = "\(what) asks for the interpreter \(interpreter) (its #! line or ELF loader), which does not exist in the sandbox's root (\(root.name))"
        } else if step.hasPrefix("open /") && code == ENOENT && path == Self.shell {
            why = "the \(root.name) root has no shell: \(path) does not exist"
        } else if step.hasPrefix("open /") && code == ENOENT {
            why = "\(path) does not exist in the sandbox"
        } else if step.hasPrefix("open /") {
            why = "\(path) cannot be opened by the guest: \(String(cString: strerror(code)))"
        } else if step == "execveat" && code == EACCES {
            why = "\(what) is not executable by the guest, or lies on a noexec mount (/tmp, an empty /workspace)"
        } else if step == "execveat" && code == ENOEXEC {
            why = "\(what) is not a program this kernel can run"
        } else if step == "execveat" && code == ENOENT {
            why = "\(what) needs an interpreter or loader that the sandbox's root does not have (not named: the file is unreadable to the guest, or what it asks for needs another that is missing)"
        } else {
            return error
        }
        return SecureExecError(.spawnFailed, why, step: step, errno: code)
    }
}
