import ArgumentParser
import Dispatch
import Foundation
import SecureExec

/// `secure-exec run`: one guest, run to completion, its output streamed.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a Node.js program in a new sandbox until it exits.",
        discussion: """
            Streams the guest's stdout and stderr as they come and exits with its code \
            (see `secure-exec --help` for the codes of signals and limits). Ctrl-C or \
            SIGTERM sends the guest SIGTERM, then SIGKILL if it has not exited after --grace \
            (default 1s); a second Ctrl-C kills it at once. The sandbox is removed either way. \
            Unless the guest exited by itself, a last line on stderr says how it ended \
            (which limit, or which signal); so does a line for output cut at 64 MiB.

            Examples:
              secure-exec run -e 'console.log(1 + 1)'
              secure-exec run server.js --allow-net --timeout 30s
              secure-exec run app.mjs --memory 256M --cpu 10s --env NODE_ENV=production -- --port 3000
              secure-exec run ./my-app --command 'npm test'
            """)

    @Argument(help: "A JavaScript file (ESM or CommonJS), or a project directory to upload and run.")
    var file: String?

    @Option(name: .short, help: ArgumentHelp("Code to run instead of a file.", valueName: "CODE"))
    var eval: String?

    @OptionGroup var sandbox: SandboxOptions

    @Option(help: ArgumentHelp("Kill the guest after this long, 1ms to 365d, e.g. 60s.", valueName: "DURATION"))
    var timeout: String?

    @Flag(help: "Print one JSON event per line instead of raw output.")
    var json = false

    @Argument(parsing: .postTerminator, help: "Arguments passed to the guest (after --).")
    var guestArguments: [String] = []

    func validate() throws {
        if sandbox.command != nil {
            if eval != nil { throw ValidationError("give either -e CODE or --command, not both") }
        } else if (file == nil) == (eval == nil) {
            throw ValidationError("give either a FILE or -e CODE (or --command)")
        }
        if let file { _ = try Project.load(path: file) }
        _ = try parsedTimeout()
        try sandbox.validate(guestArguments: guestArguments)
    }

    func parsedTimeout() throws -> Duration? {
        try timeout.map { try Units.duration($0, flag: "--timeout", in: .milliseconds(1)...Units.maxDuration) }
    }

    func run() async throws {
        let project = try eval.map { Project.code($0) } ?? file.map { try Project.load(path: $0) } ?? .empty
        let limits = try sandbox.limits()
        let timeout = try parsedTimeout()
        let output = EventPrinter(json: json)
        let lifecycle = Lifecycle(grace: limits.terminationGrace, interruptedCode: nil)
        lifecycle.install()
        defer { lifecycle.remove() }
        let runtime = try await sandbox.makeRuntime(for: project)
        // Listening before the guest exists: its first refusal is printed too.
        let denials = SandboxOptions.printEgressEvents(of: runtime, to: output)
        if lifecycle.stopRequested {
            await runtime.dispose()
            output.note("interrupted before the guest started")
            throw ExitCode(lifecycle.interruptedExitCode)
        }
        let process: GuestProcess
        do {
            process = try await sandbox.start(
                project, in: runtime, arguments: guestArguments, timeout: timeout, output: output)
        } catch {
            await runtime.dispose()
            throw CLIFailure.starting(error)
        }
        output.spawned(pid: process.pid)
        lifecycle.attach(process)
        let forwarding = StdinForwarder.start(to: process)
        let termination = try await process.wait()
        forwarding.cancel()
        let code = ExitCodes.code(for: termination)
        lifecycle.guestEnded(exitCode: code)
        let ending = GuestEnding(process, termination, lifecycle: lifecycle, limits: limits, timeout: timeout)
        // Disposing ends the event stream: every denial is printed before the ending.
        await runtime.dispose()
        await denials.value
        output.exited(ending, quiet: ending.isPlainExit)
        throw ExitCode(code)
    }
}

extension ExitCodes {
    static func code(for termination: Termination) -> Int32 {
        switch termination {
        case .exited(let code): code
        case .signaled(let signal): 128 + signal.rawValue
        case .timedOut: timedOut
        case .outOfMemory: outOfMemory
        case .cpuLimit: cpuLimit
        @unknown default: unavailable
        }
    }
}

/// An error that ends the CLI with a plain message and a documented code.
struct CLIFailure: Error, CustomStringConvertible {
    let message: String
    let code: Int32
    var description: String { message }

    /// A failure to start the guest: bad input the API found is 64, anything else 69.
    static func starting(_ error: any Error) -> CLIFailure {
        switch error {
        case let failure as CLIFailure: failure
        case let error as ValidationError: CLIFailure(message: error.message, code: ExitCodes.usage)
        case let error as SecureExecError where error.code == .invalidArgument:
            CLIFailure(message: error.message, code: ExitCodes.usage)
        default: CLIFailure(message: "could not start the guest: \(error)", code: ExitCodes.unavailable)
        }
    }
}
