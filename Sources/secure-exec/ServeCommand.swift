import ArgumentParser
import Foundation
import SecureExec

/// `secure-exec serve`: a dev server, waited for, optionally exposed, kept
/// running until interrupted.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Start a Node.js dev server in a sandbox and keep it serving until interrupted.",
        discussion: """
            Waits until the server listens on --port inside the sandbox, then prints that it is \
            ready, or the URL it is exposed on with --expose. Network is always allowed inside \
            the sandbox for serve (the server must listen); nothing is reachable from outside \
            unless exposed. Each guest exit is printed with its reason. Ctrl-C stops it.

            Examples:
              secure-exec serve server.js --port 3000 --expose 8080
              secure-exec serve server.mjs --port 3000 --expose 127.0.0.1:0 --json
            """)

    @Argument(help: "The server's JavaScript file, or a project directory to upload and start.")
    var file: String

    @Option(help: "The port the server listens on inside the sandbox.")
    var port: Int

    @Option(help: ArgumentHelp("Expose the server on a host port: PORT or HOST:PORT (0 = any free port).", valueName: "[HOST:]PORT"))
    var expose: String?

    @Flag(name: .customLong("expose-beyond-loopback"), help: "Allow --expose on a non-loopback address.")
    var exposeBeyondLoopback = false

    @Option(help: ArgumentHelp("How long to wait for the server to listen.", valueName: "DURATION"))
    var readyTimeout: String = "30s"

    @OptionGroup var sandbox: SandboxOptions

    @Flag(help: "Print one JSON event per line instead of raw output.")
    var json = false

    func validate() throws {
        _ = try Project.load(path: file)
        guard (1...65535).contains(port) else { throw ValidationError("--port must be 1-65535") }
        if let expose { _ = try Self.parseExpose(expose) }
        guard Units.duration(readyTimeout) != nil else { throw ValidationError("--ready-timeout expects a duration like 30s") }
        _ = try sandbox.parsedEnvironment()
        _ = try sandbox.parsedMounts()
        _ = try sandbox.limits()
        _ = try sandbox.validateNodeModules()
    }

    static func parseExpose(_ text: String) throws -> (host: String, port: Int) {
        var host = "127.0.0.1"
        var portText = text
        if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            portText = String(text[text.index(after: colon)...])
        }
        guard let port = Int(portText), (0...65535).contains(port), !host.isEmpty else {
            throw ValidationError("--expose expects PORT or HOST:PORT, got \(text.debugDescription)")
        }
        return (host, port)
    }

    func run() async throws {
        let project = try Project.load(path: file)
        let output = EventPrinter(json: json)
        var options = sandbox
        options.allowNetwork = true
        let runtime = try await options.makeRuntime(for: project)
        let interrupts = InterruptHandler()
        let stop = AsyncStream<Void>.makeStream()
        interrupts.install(first: { stop.continuation.finish() }, second: { stop.continuation.finish() })
        defer { interrupts.remove() }

        let termination: Termination?
        do {
            let server = try await options.start(project, in: runtime, arguments: [], timeout: nil, output: output)
            output.spawned(pid: server.pid)
            try await runtime.waitForListener(port: port, timeout: Units.duration(readyTimeout)!, process: server)
            output.listening(port: port)
            if let expose {
                let (host, hostPort) = try Self.parseExpose(expose)
                let exposed = try await runtime.expose(
                    port, host: host, port: hostPort, allowNonLoopback: exposeBeyondLoopback)
                output.exposed(url: exposed.url)
            } else if !json {
                output.note("ready (not exposed; pass --expose PORT to reach it from the host)")
            }
            // Serve until interrupted or until the server exits by itself,
            // whichever comes first.
            let (outcomes, outcome) = AsyncStream<Termination?>.makeStream()
            let watcher = Task { outcome.yield(await server.wait()) }
            let interrupted = Task {
                for await _ in stop.stream {}
                outcome.yield(nil)
            }
            var first: Termination?? = nil
            for await next in outcomes {
                first = next
                break
            }
            interrupted.cancel()
            watcher.cancel()
            termination = first ?? nil
            if termination == nil {
                server.kill()
                output.exited(await server.wait())
            } else if let termination {
                output.exited(termination)
                if !json { output.note("the server \(termination)") }
            }
        } catch let error as ValidationError {
            await runtime.dispose()
            throw CLIFailure(message: error.message, code: ExitCodes.usage)
        } catch {
            await runtime.dispose()
            throw CLIFailure(message: "\(error)", code: ExitCodes.unavailable)
        }
        await runtime.dispose()
        if let termination { throw ExitCode(ExitCodes.code(for: termination)) }
    }
}
