import ArgumentParser
import Foundation
import SecureExec
import Synchronization

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
            unless exposed. Ctrl-C or SIGTERM sends the server SIGTERM, then SIGKILL if it has \
            not exited after --grace (default 1s); a second Ctrl-C kills it at once. A last \
            line on stderr says how the server ended. Stopped so, serve exits 0; if the server \
            exits by itself, serve exits with its code.

            Examples:
              secure-exec serve server.js --port 3000 --expose 8080
              secure-exec serve server.mjs --port 3000 --expose 127.0.0.1:0 --json
              secure-exec serve ./my-vite-app --port 5173 --expose 8080 --command 'npm run dev'
            """)

    @Argument(help: "The server's JavaScript file, or a project directory to upload and start.")
    var file: String

    @Option(help: "The port the server listens on inside the sandbox.")
    var port: Int

    @Option(help: ArgumentHelp("Expose the server on a host port: PORT or HOST:PORT, HOST an IP address (0 = any free port).", valueName: "[HOST:]PORT"))
    var expose: String?

    @Flag(name: .customLong("expose-beyond-loopback"), help: "Allow --expose on a non-loopback address.")
    var exposeBeyondLoopback = false

    @Option(help: ArgumentHelp("How long to wait for the server to listen, 1ms to 365d.", valueName: "DURATION"))
    var readyTimeout: String = "30s"

    @OptionGroup var sandbox: SandboxOptions

    @Flag(help: "Print one JSON event per line instead of raw output.")
    var json = false

    func validate() throws {
        _ = try Project.load(path: file)
        guard (1...65535).contains(port) else { throw ValidationError("--port must be 1-65535") }
        if let expose { _ = try Self.parseExpose(expose, beyondLoopback: exposeBeyondLoopback) }
        _ = try parsedReadyTimeout()
        try sandbox.validate(guestArguments: [])
    }

    func parsedReadyTimeout() throws -> Duration {
        try Units.duration(readyTimeout, flag: "--ready-timeout", in: .milliseconds(1)...Units.maxDuration)
    }

    /// `PORT`, `HOST:PORT` or `[IPv6]:PORT`; HOST is an IP address (or
    /// localhost), and a loopback one unless `beyondLoopback`.
    static func parseExpose(_ text: String, beyondLoopback: Bool) throws -> (host: String, port: Int) {
        var host = "127.0.0.1"
        var portText = text
        if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            portText = String(text[text.index(after: colon)...])
        }
        guard case .value(let port) = Units.number(Substring(portText)), (0...65535).contains(port), !host.isEmpty else {
            throw ValidationError("--expose expects PORT or HOST:PORT (port 0-65535), got \(text.debugDescription)")
        }
        guard let loopback = AddressLiteral.isLoopback(host) else {
            throw ValidationError(
                "--expose: \(host.debugDescription) is not an IP address (give one like 127.0.0.1 or [::1], or localhost)")
        }
        guard loopback || beyondLoopback else {
            throw ValidationError(
                "--expose: \(host) is not a loopback address; add --expose-beyond-loopback to expose the server beyond this machine")
        }
        return (host, port)
    }

    func run() async throws {
        let project = try Project.load(path: file)
        let readyTimeout = try parsedReadyTimeout()
        let exposeAt = try expose.map { try Self.parseExpose($0, beyondLoopback: exposeBeyondLoopback) }
        let output = EventPrinter(json: json)
        var options = sandbox
        options.allowNetwork = true
        let limits = try options.limits()
        let lifecycle = Lifecycle(grace: limits.terminationGrace, interruptedCode: 0)
        lifecycle.install()
        defer { lifecycle.remove() }
        // A reload asked for before the server runs is no reason to die of SIGHUP.
        if options.allowHostsFile != nil { signal(SIGHUP, SIG_IGN) }
        let runtime = try await options.makeRuntime(for: project)
        // Listening before the server exists: its first refusal is printed too.
        let denials = SandboxOptions.printEgressEvents(of: runtime, to: output)
        if lifecycle.stopRequested {
            await runtime.dispose()
            output.note("interrupted before the server started")
            return
        }

        let server: GuestProcess
        do {
            server = try await options.start(project, in: runtime, arguments: [], timeout: nil, output: output)
        } catch {
            await runtime.dispose()
            throw CLIFailure.starting(error)
        }
        output.spawned(pid: server.pid)
        lifecycle.attach(server)
        let reloader = options.allowHostsFile.map { [allowHosts = options.allowHosts] file in
            EgressReloader(runtime: runtime, output: output) {
                try SandboxOptions.egressPolicy(allowHosts: allowHosts, file: file)
            }
        }
        defer { reloader?.stop() }

        do {
            try await runtime.waitForListener(port: port, timeout: readyTimeout, process: server)
            output.listening(port: port)
            if let exposeAt {
                let exposed = try await runtime.expose(
                    port, host: exposeAt.host, port: exposeAt.port, allowNonLoopback: exposeBeyondLoopback)
                output.exposed(url: exposed.url)
            } else if !json {
                output.note("ready (not exposed; pass --expose PORT to reach it from the host)")
            }
        } catch let error where !lifecycle.stopRequested {
            // Never listened (it exited, or the ready timeout passed), or could not be exposed.
            let code = error.code == .invalidArgument ? ExitCodes.usage : ExitCodes.unavailable
            let failure = CLIFailure(message: error.code == .processExited ? error.message : "\(error)", code: code)
            await runtime.dispose()
            throw failure
        } catch {
            // Interrupted while starting: the lifecycle is already ending the server.
        }

        // Serve until the server exits: by itself, or because a signal ended it.
        let termination = try await server.wait()
        let stopped = lifecycle.stopRequested
        let code = stopped ? 0 : ExitCodes.code(for: termination)
        lifecycle.guestEnded(exitCode: code)
        await runtime.dispose()
        await denials.value
        output.exited(GuestEnding(server, termination, lifecycle: lifecycle, limits: limits, timeout: nil))
        if code != 0 { throw ExitCode(code) }
    }
}

/// Reads `--allow-hosts-file` again on SIGHUP and applies it with
/// `setEgress`; a file that no longer parses keeps the policy in force.
/// Reloads run one after another, in the order the signals came.
final class EgressReloader: Sendable {
    private let source: DispatchSourceSignalBox
    private let chain = ReloadChain()

    init(runtime: NodeRuntime, output: EventPrinter, policy: @escaping @Sendable () throws -> EgressPolicy?) {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: DispatchQueue(label: "secure-exec.reload"))
        self.source = DispatchSourceSignalBox(source: source)
        source.setEventHandler { [chain] in
            chain.append {
                do {
                    guard let policy = try policy() else { return }
                    try await runtime.setEgress(policy)
                    output.note("egress policy reloaded: \(policy.rules.count) rule(s)")
                } catch {
                    output.note("egress policy not reloaded: \(error)")
                }
            }
        }
        source.resume()
    }

    func stop() { source.source.cancel() }
}

/// Work run one item after another, in the order appended.
final class ReloadChain: Sendable {
    private let last = Mutex<Task<Void, Never>?>(nil)

    func append(_ work: @escaping @Sendable () async -> Void) {
        last.withLock { previous in
            previous = Task { [previous] in
                await previous?.value
                await work()
            }
        }
    }
}

/// IP address literals, checked without any lookup.
enum AddressLiteral {
    /// Whether `host` is a loopback address; nil if it is not an IPv4 or
    /// IPv6 literal (or "localhost", which is loopback).
    static func isLoopback(_ host: String) -> Bool? {
        if host == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, host, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return true }
        // An IPv4-mapped address (::ffff:127.x.y.z).
        return bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff && bytes[12] == 127
    }
}
