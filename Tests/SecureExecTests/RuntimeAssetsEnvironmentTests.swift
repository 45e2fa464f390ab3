import TestSupport
import Testing

/// `SECURE_EXEC_INIT` and `SECURE_EXEC_NODE` as an operator sets them, in a
/// `secure-exec` process of its own (this test process's environment is
/// never changed): a path that is not there fails the run, naming the
/// variable and the path, instead of being skipped for another.
@Suite("Runtime assets: SECURE_EXEC_INIT and SECURE_EXEC_NODE", .needsRoot, .timeLimit(.minutes(2)))
struct RuntimeAssetsEnvironmentTests {
    func run(environment: [String: String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        let program = try HostProgram(
            try PackagePaths.requireProduct("secure-exec"), arguments: ["run", "-e", "console.log('ran')"],
            environment: environment)
        defer { program.stop() }
        let (status, _) = try await program.waitForExit(timeout: .seconds(60))
        return (status, program.stdout.text, program.stderr.text)
    }

    @Test("a missing SECURE_EXEC_INIT or SECURE_EXEC_NODE is an error naming it; the built init by that variable works")
    func environmentPaths() async throws {
        for (variable, path) in [
            ("SECURE_EXEC_INIT", "/nonexistent/secure-exec-init"), ("SECURE_EXEC_NODE", "/nonexistent/node"),
        ] {
            let result = try await run(environment: [variable: path])
            #expect(result.status == 69, "\(variable): \(result)")
            #expect(result.stdout.isEmpty, "\(variable): \(result)")
            #expect(result.stderr.contains(variable) && result.stderr.contains(path), "\(variable): \(result.stderr)")
        }
        let initProgram = try PackagePaths.requireProduct("secure-exec-init")
        let result = try await run(environment: ["SECURE_EXEC_INIT": initProgram])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout == "ran\n")
    }
}
