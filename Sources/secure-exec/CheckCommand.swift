import ArgumentParser
import Foundation
import SecureExec

/// `secure-exec check`: can this host run sandboxes?
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Tell whether this host can run SecureExec sandboxes.",
        discussion: """
            Checks root, user namespaces (and any sysctl or AppArmor restriction), seccomp, \
            pidfd, the kernel version, the cgroup memory and pids controllers (v1 or v2), and \
            the node binary, then makes a real sandbox that runs node and reports its version. \
            Exits 0 when everything required is there, \(ExitCodes.unavailable) otherwise, with the fix in words.

            Examples:
              secure-exec check
              secure-exec check --json | jq .ok
            """)

    @Flag(help: "Print the report as one JSON object.")
    var json = false

    @Option(help: ArgumentHelp("The node binary to check (default: SECURE_EXEC_NODE, then PATH).", valueName: "PATH"))
    var node: String?

    func run() async throws {
        let report = await NodeRuntime.checkHost(node: node)
        if json {
            let object: [String: Any] = [
                "ok": report.canRunSandboxes,
                "node": ["path": report.nodePath as Any, "version": report.nodeVersion as Any],
                "checks": report.checks.map { check in
                    ["name": check.name, "ok": check.ok, "required": check.required, "detail": check.detail,
                     "fix": check.fix as Any]
                },
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            let width = (report.checks.map(\.name.count).max() ?? 8) + 2
            for check in report.checks {
                let mark = check.ok ? "ok  " : (check.required ? "FAIL" : "warn")
                print("\(mark)  \(check.name.padding(toLength: width, withPad: " ", startingAt: 0))\(check.detail)")
                if !check.ok, let fix = check.fix { print("      \(String(repeating: " ", count: width))fix: \(fix)") }
            }
            print(report.canRunSandboxes ? "\nThis host can run sandboxes." : "\nThis host cannot run sandboxes yet.")
        }
        if !report.canRunSandboxes { throw ExitCode(ExitCodes.unavailable) }
    }
}
