import CNamespaces
import TestSupport
import Testing

@testable import SecureExec

#if canImport(Glibc)
import Glibc
#endif

/// When SecureExec itself cannot start an executable, the error names the
/// path that is missing: the executable, or the interpreter it asks for (a
/// `#!` line's program, an ELF's loader), which execve alone reports as the
/// executable's own ENOENT. (A guest's own child_process cannot be helped
/// this way; the README says so.) The executables are started with
/// `spawnExecutable`; one test sends the spawn request to init directly, as
/// a runtime without the childProcess permission starts node, to show init
/// names the interpreter before anything would exec it.
@Suite("Guest system: a missing interpreter is named", .needsRoot, .timeLimit(.minutes(2)))
struct MissingInterpreterTests {
    static let toolsDirectory = "/opt/tools"

    /// Starts `executable` (a guest path) with `spawnExecutable` and returns the spawn's error.
    static func spawnError(_ executable: String, in runtime: NodeRuntime) async throws -> SecureExecError {
        do {
            let process = try await runtime.spawnExecutable(executable)
            process.kill(.kill)
            throw TestFailure("\(executable) started: pid \(process.pid)")
        } catch let error as SecureExecError {
            return error
        }
    }

    /// Asks init to start `executable` (a guest path) directly and returns the spawn's error.
    static func initSpawnError(_ executable: String, in runtime: NodeRuntime) async throws -> SecureExecError {
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        guard null >= 0 else { throw HostCallError(step: "open /dev/null", errno: errno) }
        defer { close(null) }
        let reply = try runtime.sandbox.connection.request(
            SE_REQ_SPAWN, step: "test",
            records: { _ in [
                InitProtocol.record(SE_KEY_EXE, executable), InitProtocol.record(SE_KEY_CWD, "/workspace"),
                InitProtocol.record(SE_KEY_ARG, executable),
            ] },
            fds: [null, null, null])
        switch await reply.wait() {
        case .failure(let error): return error
        case .success(let answer): throw TestFailure("init started \(executable): \(answer)")
        }
    }

    /// Runs `body` with a runtime that has a host directory holding `files` (name → contents, mode 0755) at
    /// /opt/tools, allowed to start programs unless `permissions` says otherwise.
    func withTools(
        _ files: [String: String], permissions: Permissions = Permissions(childProcess: .allow),
        _ body: (NodeRuntime) async throws -> Void
    ) async throws {
        try await withHostDirectory { directory in
            for (name, contents) in files { try HostFiles.write(directory + "/" + name, contents, mode: 0o755) }
            try await withRuntime(permissions: permissions, mounts: [Mount(host: directory, guest: Self.toolsDirectory)]) {
                try await body($0)
            }
        }
    }

    @Test("a script whose #! interpreter is missing fails naming the interpreter")
    func shebangInterpreter() async throws {
        try await withTools(["build": "#!/usr/local/bin/no-such-interpreter --flag\necho hi\n"]) { runtime in
            let error = try await Self.spawnError(Self.toolsDirectory + "/build", in: runtime)
            #expect(error.code == .spawnFailed, "\(error)")
            #expect(error.errno == ENOENT, "\(error)")
            #expect(error.step == "missing interpreter /usr/local/bin/no-such-interpreter", "\(error)")
            #expect(error.message.contains("/usr/local/bin/no-such-interpreter"), "\(error)")
        }
    }

    @Test("an executable that is not there fails naming itself")
    func missingExecutable() async throws {
        try await withTools([:]) { runtime in
            let error = try await Self.spawnError(Self.toolsDirectory + "/absent", in: runtime)
            #expect(error.code == .spawnFailed, "\(error)")
            #expect(error.errno == ENOENT, "\(error)")
            #expect(error.step == "open /opt/tools/absent", "\(error)")
        }
    }

    @Test("an ELF executable whose loader is missing fails naming the loader")
    func elfLoader() async throws {
        try await withHostDirectory { directory in
            try HostFiles.write(directory + "/main.c", "int main(void) { return 0; }\n")
            let compiler = try HostProgram(
                "/usr/bin/cc", arguments: ["-o", directory + "/tool", "-Wl,--dynamic-linker=/lib/no-such-loader.so.2", directory + "/main.c"])
            defer { compiler.stop() }
            try #require(try await compiler.waitForExit().status == 0, "cc: \(compiler.stderr.text)")
            try await withRuntime(
                permissions: Permissions(childProcess: .allow), mounts: [Mount(host: directory, guest: Self.toolsDirectory)]
            ) { runtime in
                let error = try await Self.spawnError(Self.toolsDirectory + "/tool", in: runtime)
                #expect(error.errno == ENOENT, "\(error)")
                #expect(error.step == "missing interpreter /lib/no-such-loader.so.2", "\(error)")
            }
        }
    }

    @Test("a path too long for the event keeps its end")
    func longInterpreter() async throws {
        let interpreter = "/usr/local/" + String(repeating: "deep/", count: 20) + "python3"
        try await withTools(["run": "#!\(interpreter)\n"]) { runtime in
            let error = try await Self.spawnError(Self.toolsDirectory + "/run", in: runtime)
            let step = try #require(error.step)
            #expect(step.hasPrefix("missing interpreter ..."), "\(error)")
            #expect(step.hasSuffix("/deep/python3"), "\(error)")
        }
    }

    @Test("init names the interpreter before anything would exec it, also without the childProcess permission")
    func namedByInit() async throws {
        try await withTools(["build": "#!/usr/local/bin/no-such-interpreter\n"], permissions: Permissions()) { runtime in
            let error = try await Self.initSpawnError(Self.toolsDirectory + "/build", in: runtime)
            #expect(error.errno == ENOENT, "\(error)")
            #expect(error.step == "missing interpreter /usr/local/bin/no-such-interpreter", "\(error)")
            let absent = try await Self.initSpawnError(Self.toolsDirectory + "/absent", in: runtime)
            #expect(absent.step == "open /opt/tools/absent", "\(absent)")
        }
    }
}
