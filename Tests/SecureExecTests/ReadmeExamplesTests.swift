import Foundation
import TestSupport
import Testing

/// The README's "Uploading a project" and "Run to completion" examples run
/// and print what the README says, so the documentation cannot rot. (That the
/// README quotes them verbatim is checked without root, in UnitTests.)
@Suite("README examples", .needsRoot, .timeLimit(.minutes(1)))
struct ReadmeExamplesTests {
    @Test("the upload example serves its project through fetch")
    func uploadExampleRuns() async throws {
        let program = try HostProgram(PackagePaths.product("UploadProjectExample"))
        defer { program.stop() }
        let (status, _) = try await program.waitForExit()
        #expect(status == 0, "stderr: \(program.stderr.text)")
        #expect(program.stdout.text == "200 hello, sandbox\n")
    }

    @Test("the run-to-completion example reports exit 2, both streams and the returned value")
    func runToCompletionExampleRuns() async throws {
        let program = try HostProgram(PackagePaths.product("RunToCompletionExample"))
        defer { program.stop() }
        let (status, _) = try await program.waitForExit()
        #expect(status == 0, "stderr: \(program.stderr.text)")
        #expect(program.stdout.text == "exited with code 2 | to stdout\n | to stderr\ncount 3, mean 6.0\n")
    }
}
