import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Real clients through egress, with no proxy settings and no change to
/// them: npm (the `.standard` root's) asks a registry, and the host's curl
/// and git (the `.host` root) fetch over HTTPS, each verifying the upstream's
/// own certificate against the fixture CA. The upstreams are
/// `EgressUpstreams` (Tests/Fixtures/egress/upstream.mjs): its servers also
/// answer as a fake npm registry (`/left-pad`) and serve a test's directory
/// statically (`/static/<dir>/...`), which is enough for git's dumb HTTP.
///
/// A missing host tool fails the test with what to install; nothing skips.
@Suite("Egress: npm, curl and git through the allow-list", .needsRoot, .serialized, .timeLimit(.minutes(3)))
struct EgressClientsTests {
    /// The version only the fake registry has.
    static let leftPadVersion = "9.9.9-secure-exec"

    /// The test names, plus the registry's and the git server's (all the one public upstream).
    static let names = EgressUpstreams.names.merging([
        "registry.upstream.test": [EgressUpstreams.publicAddress],
        "git.upstream.test": [EgressUpstreams.publicAddress],
    ]) { current, _ in current }

    /// Runs `body` with a runtime on `root` that may start programs and reach
    /// `patterns`, the fixture CA at /workspace/ca.pem, and the egress events
    /// seen so far; the runtime is disposed afterwards, whatever happens.
    func withClients<R: Sendable>(
        _ upstreams: EgressUpstreams, root: RootImage, allow patterns: [String],
        _ body: (NodeRuntime, AskedEvents) async throws -> R
    ) async throws -> R {
        let policy = try upstreams.policy(allow: patterns, resolver: .hosts(Self.names))
        let permissions = Permissions(network: .allow(egress: policy), childProcess: .allow)
        return try await withRuntime(root: root, permissions: permissions) { runtime in
            try await runtime.writeFile("/workspace/ca.pem", EgressUpstreams.caCertificate)
            let seen = AskedEvents()
            let collecting = Task { [events = runtime.egressEvents] in
                for await event in events { seen.add(event) }
            }
            defer { collecting.cancel() }
            return try await body(runtime, seen)
        }
    }

    /// The host's `name` under /usr (what the `.host` root shows the guest), or a failure saying it is missing.
    static func hostTool(_ name: String, package: String) throws -> String {
        for directory in ["/usr/bin", "/usr/local/bin"] where access(directory + "/" + name, X_OK) == 0 {
            return directory + "/" + name
        }
        throw TestFailure("\(name) is not installed on the host (under /usr), and the .host root runs the host's own: apt-get install \(package)")
    }

    // MARK: - npm

    @Test("npm view asks the registry by name over HTTPS and prints the version only the fake registry has")
    func npmView() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let before = try upstreams.accepted()
        let (result, seen) = try await withClients(upstreams, root: .standard, allow: ["registry.upstream.test"]) {
            runtime, seen in
            let result = try await runtime.execCommand(
                "npm view left-pad version --registry https://registry.upstream.test/ --fetch-retries 0",
                environment: EgressTests.caEnvironment, timeout: .seconds(90))
            return (result, seen.all)
        }
        #expect(result.exitCode == 0, "\(result.summary); egress events: \(seen)")
        #expect(result.stdoutText == Self.leftPadVersion + "\n", "\(result.summary); egress events: \(seen)")
        let after = try upstreams.accepted()
        #expect(after["secure", default: 0] > before["secure", default: 0], "the registry's server saw no connection")
    }

    @Test("npm against a registry not on the list fails with ENOTFOUND, and the denial names the registry")
    func npmRegistryNotAllowed() async throws {
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let (result, seen) = try await withClients(upstreams, root: .standard, allow: ["secure.upstream.test"]) {
            runtime, seen in
            let result = try await runtime.execCommand(
                "npm view left-pad version --registry https://registry.upstream.test/ --fetch-retries 0",
                environment: EgressTests.caEnvironment, timeout: .seconds(90))
            _ = await poll(for: .seconds(10)) { seen.all.contains { $0.reason == .nameNotAllowed } }
            return (result, seen.all)
        }
        #expect(result.exitCode != 0, "\(result.summary)")
        #expect(result.stderrText.contains("ENOTFOUND"), "\(result.summary)")
        #expect(!result.stdoutText.contains(Self.leftPadVersion), "\(result.summary)")
        #expect(
            seen.contains { $0.reason == .nameNotAllowed && $0.host == "registry.upstream.test" },
            "egress events: \(seen)")
    }

    // MARK: - The host's curl and git

    @Test("the host's curl fetches by name over HTTPS, verifying the upstream's own certificate")
    func curlHTTPS() async throws {
        _ = try Self.hostTool("curl", package: "curl")
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        let (result, seen) = try await withClients(upstreams, root: .host, allow: ["secure.upstream.test"]) {
            runtime, seen in
            let result = try await runtime.execCommand(
                """
                curl --silent --show-error --fail --cacert /workspace/ca.pem https://secure.upstream.test/curl
                echo
                curl --silent --show-error --fail --cacert /workspace/ca.pem -o /dev/null \
                  -w '%{ssl_verify_result} %{remote_ip} %{http_code}\\n' https://secure.upstream.test/
                """, timeout: .seconds(60))
            return (result, seen.all)
        }
        #expect(result.exitCode == 0, "\(result.summary); egress events: \(seen)")
        let lines = result.stdoutText.split(separator: "\n").map(String.init)
        try #require(lines.count == 2, "\(result.summary)")
        let body = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any]
        #expect(body?["server"] as? String == "secure", "\(result.summary)")
        #expect(body?["path"] as? String == "/curl")
        #expect(body?["host"] as? String == "secure.upstream.test")
        // Verified (0) against the fixture CA, and connected to the upstream's real address: no proxy, no interception.
        #expect(lines[1] == "0 \(EgressUpstreams.publicAddress) 200", "\(result.summary)")
    }

    @Test("the host's git clones a repository over dumb HTTPS by name, with GIT_SSL_CAINFO")
    func gitClone() async throws {
        let git = try Self.hostTool("git", package: "git")
        let upstreams = try await EgressUpstreams()
        defer { upstreams.stop() }
        try await withHostDirectory { directory in
            let head = try await Self.makeServedRepository(in: directory, git: git)
            let url = "https://git.upstream.test/static/\((directory as NSString).lastPathComponent)/repo.git"
            let before = try upstreams.accepted()
            let (result, seen) = try await withClients(upstreams, root: .host, allow: ["git.upstream.test"]) {
                runtime, seen in
                let result = try await runtime.execCommand(
                    """
                    set -e
                    git clone --quiet '\(url)' /workspace/clone
                    cat /workspace/clone/hello.txt
                    git -C /workspace/clone log -1 --format='%H %s'
                    """,
                    environment: ["GIT_SSL_CAINFO": "/workspace/ca.pem", "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"],
                    timeout: .seconds(90))
                return (result, seen.all)
            }
            #expect(result.exitCode == 0, "\(result.summary); egress events: \(seen)")
            #expect(result.stdoutText == "hello through egress\n\(head) first commit through egress\n", "\(result.summary)")
            let after = try upstreams.accepted()
            #expect(after["secure", default: 0] > before["secure", default: 0], "the git server saw no connection")
        }
    }

    /// Makes `directory/repo.git`, a bare repository with one commit of
    /// `hello.txt`, ready for dumb HTTP (`git update-server-info`), with the
    /// host's git and none of the host's git configuration; returns the commit's hash.
    static func makeServedRepository(in directory: String, git: String) async throws -> String {
        let environment = [
            "HOME": directory, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_AUTHOR_NAME": "SecureExec tests", "GIT_AUTHOR_EMAIL": "tests@upstream.test",
            "GIT_COMMITTER_NAME": "SecureExec tests", "GIT_COMMITTER_EMAIL": "tests@upstream.test",
        ]
        func run(_ arguments: [String]) async throws -> String {
            let program = try HostProgram(git, arguments: arguments, environment: environment)
            defer { program.stop() }
            let (status, _) = try await program.waitForExit(timeout: .seconds(30))
            guard status == 0 else {
                throw TestFailure("host git \(arguments.joined(separator: " ")) exited \(status): \(program.stderr.text)")
            }
            return program.stdout.text
        }
        let work = directory + "/work"
        let bare = directory + "/repo.git"
        _ = try await run(["init", "--quiet", "--initial-branch=main", work])
        try HostFiles.write(work + "/hello.txt", "hello through egress\n")
        _ = try await run(["-C", work, "add", "hello.txt"])
        _ = try await run(["-C", work, "commit", "--quiet", "-m", "first commit through egress"])
        _ = try await run(["clone", "--quiet", "--bare", "--no-local", work, bare])
        _ = try await run(["-C", bare, "update-server-info"])
        return try await run(["-C", bare, "rev-parse", "HEAD"]).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
