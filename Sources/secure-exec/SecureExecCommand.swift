import ArgumentParser

@main
struct SecureExecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secure-exec",
        abstract: "Run untrusted Node.js code in SecureExec sandboxes.",
        discussion: """
            Exit codes: the guest's own code; 128+N when signal N ended it; \
            \(ExitCodes.timedOut) timed out; \(ExitCodes.outOfMemory) out of memory; \
            \(ExitCodes.cpuLimit) CPU-time limit; \(ExitCodes.usage) bad arguments; \
            \(ExitCodes.unavailable) the host cannot run sandboxes or the sandbox failed.
            """,
        subcommands: [RunCommand.self, ServeCommand.self])
}

/// The CLI's documented exit codes besides the guest's own.
enum ExitCodes {
    static let timedOut: Int32 = 124
    static let outOfMemory: Int32 = 123
    static let cpuLimit: Int32 = 122
    static let usage: Int32 = 64
    static let unavailable: Int32 = 69
}
