import ArgumentParser
import Foundation

@main
struct SecureExecCommand: AsyncParsableCommand {
    /// Runs the command; our own failures print one plain line on stderr and
    /// exit with their documented code (never a stack trace).
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch let failure as CLIFailure {
            FileHandle.standardError.write(Data("secure-exec: \(failure.message)\n".utf8))
            Foundation.exit(failure.code)
        } catch {
            exit(withError: error)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "secure-exec",
        abstract: "Run untrusted Node.js code in SecureExec sandboxes.",
        discussion: """
            Exit codes: the guest's own code; 128+N when signal N ended it; \
            \(ExitCodes.timedOut) timed out; \(ExitCodes.outOfMemory) out of memory; \
            \(ExitCodes.cpuLimit) CPU-time limit; \(ExitCodes.usage) bad arguments; \
            \(ExitCodes.unavailable) the host cannot run sandboxes or the sandbox failed.

            Sizes are whole numbers with K, M, G or T (256M, 1G); durations whole numbers with \
            ms, s, m, h or d (500ms, 30s, 5m); each flag says its bounds.
            """,
        subcommands: [CheckCommand.self, RunCommand.self, ServeCommand.self, GCCommand.self])
}

/// The CLI's documented exit codes besides the guest's own.
enum ExitCodes {
    static let timedOut: Int32 = 124
    static let outOfMemory: Int32 = 123
    static let cpuLimit: Int32 = 122
    static let usage: Int32 = 64
    static let unavailable: Int32 = 69
}
