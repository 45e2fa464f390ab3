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
            SIGTERM stops the guest and removes the sandbox; a second Ctrl-C kills at once.

            Examples:
              secure-exec run -e 'console.log(1 + 1)'
              secure-exec run server.js --allow-net --timeout 30s
              secure-exec run app.mjs --memory 256M --cpu 10s --env NODE_ENV=production -- --port 3000
            """)

    @Argument(help: "A JavaScript file (ESM or CommonJS), or a project directory to upload and run.")
    var file: String?

    @Option(name: .short, help: ArgumentHelp("Code to run instead of a file.", valueName: "CODE"))
    var eval: String?

    @OptionGroup var sandbox: SandboxOptions

    @Option(help: ArgumentHelp("Kill the guest after this long, e.g. 60s.", valueName: "DURATION"))
    var timeout: String?

    @Flag(help: "Print one JSON event per line instead of raw output.")
    var json = false

    @Argument(parsing: .postTerminator, help: "Arguments passed to the guest (after --).")
    var guestArguments: [String] = []

    func validate() throws {
        if (file == nil) == (eval == nil) {
            throw ValidationError("give either a FILE or -e CODE")
        }
        if let file { _ = try Project.load(path: file) }
        if let timeout, Units.duration(timeout) == nil {
            throw ValidationError("--timeout expects a duration like 60s, got \(timeout.debugDescription)")
        }
        _ = try sandbox.parsedEnvironment()
        _ = try sandbox.parsedMounts()
        _ = try sandbox.limits()
        _ = try sandbox.validateNodeModules()
    }

    func run() async throws {
        let project = try eval.map { Project.code($0) } ?? Project.load(path: file!)
        let output = EventPrinter(json: json)
        let runtime = try await sandbox.makeRuntime(for: project)
        let interrupts = InterruptHandler()
        let termination: Termination
        do {
            let process = try await sandbox.start(
                project, in: runtime, arguments: guestArguments, timeout: timeout.flatMap(Units.duration), output: output)
            output.spawned(pid: process.pid)
            let forwarding = StdinForwarder.start(to: process)
            defer { forwarding.cancel() }
            interrupts.install(
                first: { process.kill() },
                second: { process.kill(.kill) })
            termination = await process.wait()
        } catch let error as ValidationError {
            interrupts.remove()
            await runtime.dispose()
            throw CLIFailure(message: error.message, code: ExitCodes.usage)
        } catch {
            interrupts.remove()
            await runtime.dispose()
            throw CLIFailure(message: "could not start the guest: \(error)", code: ExitCodes.unavailable)
        }
        interrupts.remove()
        await runtime.dispose()
        output.exited(termination)
        throw ExitCode(ExitCodes.code(for: termination))
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
}
