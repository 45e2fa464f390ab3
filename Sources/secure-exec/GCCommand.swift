import ArgumentParser
import Foundation
import SecureExec

/// `secure-exec gc`: remove what sandboxes of dead supervisors left behind.
struct GCCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Remove what sandboxes left behind when their supervisor was killed.",
        discussion: """
            A supervisor that is SIGKILLed (or crashes) cannot remove its sandboxes' cgroups: \
            the kernel ends their processes, but the empty cgroups stay. gc removes those whose \
            supervisor is gone, never one in use, and prints one line for each, or \
            "nothing to reclaim". Every run, serve and check also does this once before making \
            its sandbox; gc is for doing it on demand (as root, at any time).

            Examples:
              secure-exec gc
              secure-exec gc --json | jq '.removed | length'
            """)

    @Flag(help: "Print {\"removed\": [...]} instead of lines.")
    var json = false

    func run() async throws {
        let removed = NodeRuntime.reclaimLeftovers()
        if json {
            let data = try JSONSerialization.data(withJSONObject: ["removed": removed], options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else if removed.isEmpty {
            print("nothing to reclaim")
        } else {
            removed.forEach { print($0) }
        }
    }
}
