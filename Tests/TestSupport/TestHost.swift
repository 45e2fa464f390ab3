/// `secure-exec-test-host` (Tests/TestHost): a supervisor with one sandbox
/// and a guest that runs forever, for tests that kill supervisors or put
/// them in other namespaces. It prints "READY <guest pid>" once its guest runs.
public enum TestHost {
    /// Starts the built test host with `arguments` (a marker first; see its usage line).
    public static func start(_ arguments: [String]) throws -> HostProgram {
        try HostProgram(PackagePaths.requireProduct("secure-exec-test-host"), arguments: arguments)
    }
}

extension HostProgram {
    /// Waits for "READY" on stdout; on failure the error carries the program's stderr.
    public func waitUntilReady(timeout: Duration = .seconds(30)) async throws {
        do {
            try await stdout.waitUntilContains("READY", timeout: timeout)
        } catch {
            throw TestFailure("secure-exec-test-host \(pid) never said READY: \(error); its stderr: \(stderr.text)")
        }
    }
}
