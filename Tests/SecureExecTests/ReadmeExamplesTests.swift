import Foundation
import Testing

/// The README's "Uploading a project" and "Run to completion" examples are
/// the files in Examples/, verbatim, and those programs run and print what
/// the README says: so the documentation cannot rot.
@Suite("README examples", .enabled(if: Privileges.isRoot || Privileges.isCI), .timeLimit(.minutes(1)))
struct ReadmeExamplesTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func source(_ relative: String) throws -> String {
        try String(contentsOf: packageRoot.appendingPathComponent(relative), encoding: .utf8)
    }

    @Test("every README example is an Examples/ file, verbatim", arguments: [
        "Examples/UploadProject/main.swift", "Examples/RunToCompletion/main.swift",
    ])
    func readmeQuotesExample(_ file: String) throws {
        let readme = try Self.source("README.md")
        let example = try Self.source(file)
        #expect(readme.contains("```swift\n" + example + "```"), "README.md must quote \(file) whole")
    }

    @Test("the upload example serves its project through fetch")
    func uploadExampleRuns() async throws {
        let program = try HostProgram(BuildProducts.path("UploadProjectExample"))
        defer { program.stop() }
        let (status, _) = try await program.waitForExit()
        #expect(status == 0, "stderr: \(program.stderr.text)")
        #expect(program.stdout.text == "200 hello, sandbox\n")
    }

    @Test("the run-to-completion example reports exit 2, both streams and the returned value")
    func runToCompletionExampleRuns() async throws {
        let program = try HostProgram(BuildProducts.path("RunToCompletionExample"))
        defer { program.stop() }
        let (status, _) = try await program.waitForExit()
        #expect(status == 0, "stderr: \(program.stderr.text)")
        #expect(program.stdout.text == "exited with code 2 | to stdout\n | to stderr\ncount 3, mean 6.0\n")
    }
}
