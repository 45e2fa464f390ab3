import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The CLI's egress flags, run as a real process: `--allow-host` and
/// `--allow-hosts-file` on `run` and `serve`, the denial line on stderr (or
/// the `egress-denied` event with `--json`), bad patterns refused before any
/// sandbox exists, and `serve` reading the file again on SIGHUP.
///
/// The CLI dials out from the host's own network, which tests never reach;
/// so every attempt here is one the policy refuses before dialing, and each
/// rule is observed through the reason it gives: an IP rule with other ports
/// turns `addressNotAllowed` into `portNotAllowed`, and a rule for `localhost`
/// (which the host resolves from its /etc/hosts, to loopback) turns
/// `nameNotAllowed` into `privateAddress`.
@Suite("Egress: the CLI's --allow-host and --allow-hosts-file", .needsRoot, .timeLimit(.minutes(3)))
struct EgressCLITests {
    static var cli: String { PackagePaths.product("secure-exec") }

    /// The prefix of every denial line in text mode.
    static let denied = "secure-exec: egress denied: "

    /// Guest code (CommonJS) that tries each of `attempts` in turn and prints
    /// one line per attempt: "ok" or the error's code. An attempt is a JS
    /// function returning a promise; `dns`, `resolver` and `connect` are in scope.
    ///
    /// It waits `settleMilliseconds` first: the CLI starts listening for
    /// denials only after the guest runs, and a denial before that is never
    /// printed (`earlyDenialIsReported` shows it); these tests check what a
    /// denial says, not that race.
    static func program(_ attempts: [String], settleMilliseconds: Int = 1000) -> String {
        """
        const dns = require('node:dns');
        const net = require('node:net');
        const resolver = new dns.promises.Resolver();
        const connect = (host, port) => new Promise((resolve, reject) => {
          const socket = net.connect({ host, port }, () => socket.write('x'));
          socket.on('data', () => { socket.destroy(); resolve(); });
          socket.on('error', reject);
          socket.on('close', () => reject(Object.assign(new Error('closed'), { code: 'CLOSED' })));
        });
        const code = async (promise) => { try { await promise; return 'ok'; } catch (error) { return error.cause?.code ?? error.code ?? String(error); } };
        (async () => {
          await new Promise((resolve) => setTimeout(resolve, \(settleMilliseconds)));
          for (const attempt of [\(attempts.joined(separator: ", "))]) console.log(await code(attempt()));
        })();
        """
    }

    /// Runs the CLI to completion; the process is killed and its sandbox's
    /// cgroups removed afterwards, whatever happens.
    func run(_ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await withCLI(Self.cli, arguments) { program in
            let (status, _) = try await program.waitForExit(timeout: .seconds(60))
            return (status, program.stdout.text, program.stderr.text)
        }
    }

    /// The denial lines of a text-mode stderr, without the prefix.
    static func denials(_ stderr: String) -> [String] {
        stderr.split(separator: "\n").filter { $0.hasPrefix(denied) }.map { String($0.dropFirst(denied.count)) }
    }

    /// The JSON events of a `--json` stdout, in order.
    static func events(_ stdout: String) throws -> [[String: Any]] {
        try stdout.split(separator: "\n").map { line in
            try #require(
                try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON event: \(line)")
        }
    }

    // MARK: - Refusals and how they are reported

    @Test("run: an IP literal no rule covers is refused at once, and said in one line on stderr")
    func addressNotAllowed() async throws {
        let started = ContinuousClock.now
        let result = try await run([
            "run", "--allow-host", "example.com", "-e",
            Self.program(["() => fetch('http://10.1.2.3/')"]),
        ])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        // Refused promptly and ordinarily: a reset the client reports, not a hang
        // (the guest waits 1 s before trying; a connect timeout would take 10 s or more).
        #expect(["ECONNRESET", "ECONNREFUSED"].contains(result.stdout.trimmingCharacters(in: .newlines)), "stdout: \(result.stdout)")
        #expect(ContinuousClock.now - started < .seconds(8))
        #expect(
            result.stderr
                == Self.denied
                + "addressNotAllowed 10.1.2.3:80 — 10.1.2.3 was not answered by the sandbox's DNS for an allowed name and no IP rule covers it\n",
            "stderr: \(result.stderr)")
    }

    @Test("run: a name not on the list does not resolve (ENOTFOUND) and is said once, by name")
    func nameNotAllowed() async throws {
        let result = try await run([
            "run", "--allow-host", "example.com", "--allow-host", "*.example.org:443", "-e",
            Self.program(["() => dns.promises.lookup('not-listed.example.net')", "() => fetch('https://example.org.evil.test/')"]),
        ])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout == "ENOTFOUND\nENOTFOUND\n", "stdout: \(result.stdout)")
        // One lookup asks for A and AAAA: identical denials within a second are one line.
        #expect(
            Self.denials(result.stderr) == [
                "nameNotAllowed not-listed.example.net — not-listed.example.net is not on the egress allow-list",
                "nameNotAllowed example.org.evil.test — example.org.evil.test is not on the egress allow-list",
            ], "stderr: \(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 2, "nothing else on stderr: \(result.stderr)")
    }

    @Test("run --json: each denial is one egress-denied event on stdout, before the exited event; none on stderr")
    func jsonEvents() async throws {
        let result = try await run([
            "run", "--json", "--allow-host", "10.1.2.3:8443", "-e",
            Self.program([
                "() => dns.promises.lookup('not-listed.example.net')", "() => fetch('http://10.1.2.3/')",
                "() => connect('10.9.9.9', 7000)",
            ]),
        ])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(!result.stderr.contains("egress denied"), "stderr: \(result.stderr)")
        let events = try Self.events(result.stdout)
        let kinds = events.map { $0["event"] as? String ?? "?" }
        #expect(kinds.first == "spawned" && kinds.last == "exited", "\(kinds)")
        let denials = events.filter { $0["event"] as? String == "egress-denied" }
        #expect(denials.count == 3, "\(result.stdout)")
        guard denials.count == 3 else { return }
        #expect(denials[0]["reason"] as? String == "nameNotAllowed")
        #expect(denials[0]["host"] as? String == "not-listed.example.net")
        #expect(denials[0]["address"] == nil && denials[0]["port"] == nil)
        #expect(denials[0]["detail"] as? String == "not-listed.example.net is not on the egress allow-list")
        // An IP rule for the address with other ports: the port is what is refused.
        #expect(denials[1]["reason"] as? String == "portNotAllowed")
        #expect(denials[1]["address"] as? String == "10.1.2.3")
        #expect(denials[1]["port"] as? Int == 80)
        #expect(denials[1]["host"] == nil)
        #expect(denials[2]["reason"] as? String == "addressNotAllowed")
        #expect(denials[2]["address"] as? String == "10.9.9.9")
        #expect(denials[2]["port"] as? Int == 7000)
        // The guest's own output still comes as stdout events, and saw ordinary errors.
        let printed = events.filter { $0["event"] as? String == "stdout" }.compactMap { $0["data"] as? String }
            .compactMap { Data(base64Encoded: $0) }.map { String(decoding: $0, as: UTF8.self) }.joined()
        let codes = printed.split(separator: "\n").map(String.init)
        #expect(codes.count == 3 && codes[0] == "ENOTFOUND" && codes.dropFirst().allSatisfy { $0 != "ok" }, "\(printed)")
    }

    /// A guest may be refused before it prints anything: the CLI must report
    /// that denial too, so it has to listen for denials before the guest
    /// starts. Many runs at once make a late listener miss some (the guest's
    /// lookup comes within milliseconds of its start).
    @Test("run --json: a denial that is the guest's very first act is reported too (32 runs at once)")
    func earlyDenialIsReported() async throws {
        let arguments = [
            "run", "--json", "--allow-host", "10.1.2.3:8443", "-e",
            Self.program(["() => dns.promises.lookup('first.example.net')"], settleMilliseconds: 0),
        ]
        let outcomes = try await withThrowingTaskGroup(of: (Int32, [String]).self) { group in
            for _ in 0..<32 {
                group.addTask {
                    let result = try await run(arguments)
                    let reasons = try Self.events(result.stdout).filter { $0["event"] as? String == "egress-denied" }
                        .map { "\($0["reason"] ?? "?") \($0["host"] ?? "?")" }
                    return (result.status, reasons)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes.allSatisfy { $0.0 == 0 }, "\(outcomes.map(\.0))")
        let unreported = outcomes.filter { $0.1 != ["nameNotAllowed first.example.net"] }
        #expect(unreported.isEmpty, "\(unreported.count) of 32 runs did not report the refused lookup: \(unreported.map(\.1))")
    }

    @Test("run --allow-host localhost: the host resolves it to loopback, which a name rule never allows")
    func nameResolvingToLoopback() async throws {
        let result = try await run([
            "run", "--allow-host", "localhost", "-e", Self.program(["() => resolver.resolve4('localhost')"]),
        ])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout == "ENOTFOUND\n", "stdout: \(result.stdout)")
        let denials = Self.denials(result.stderr)
        #expect(denials.count == 1, "stderr: \(result.stderr)")
        #expect(denials.first?.hasPrefix("privateAddress localhost — localhost resolved to 127.0.0.1") == true, "stderr: \(result.stderr)")
    }

    // MARK: - Bad input

    /// With `--json`, anything started would print a "spawned" event first;
    /// an empty stdout shows validation refused the command before that.
    @Test("a bad --allow-host pattern: exit 64 naming it, before any sandbox exists", arguments: [
        "exa mple.com", "x:0", "10.0.0.0/33", "api.example.com:70000", "*", "[2001:db8::1", "example.com:",
    ])
    func badPattern(_ pattern: String) async throws {
        try await withHostDirectory { directory in
            // A server that would start and listen: only the pattern can stop serve.
            try HostFiles.write(directory + "/server.js", Self.askingServer)
            for command in [["run", "-e", "1"], ["serve", directory + "/server.js", "--port", "3000"]] {
                let result = try await run(command + ["--json", "--allow-host", pattern])
                #expect(result.status == 64, "\(command[0]) stderr: \(result.stderr)")
                #expect(result.stderr.contains("--allow-host"), "\(command[0]) stderr: \(result.stderr)")
                #expect(result.stderr.contains(pattern.debugDescription), "\(command[0]) stderr: \(result.stderr)")
                #expect(!result.stderr.contains("Fatal error"), "no Swift trap")
                #expect(result.stdout.isEmpty, "\(command[0]) stdout: \(result.stdout)")
            }
        }
    }

    @Test("--allow-hosts-file that cannot be read, or holds a bad pattern: exit 64, nothing started")
    func badHostsFile() async throws {
        try await withHostDirectory { directory in
            let missing = try await run(["run", "--json", "--allow-hosts-file", directory + "/none.txt", "-e", "1"])
            #expect(missing.status == 64, "stderr: \(missing.stderr)")
            #expect(missing.stderr.contains("--allow-hosts-file: cannot read"), "stderr: \(missing.stderr)")
            #expect(missing.stdout.isEmpty)

            let file = directory + "/hosts.txt"
            try HostFiles.write(file, "# fine so far\nexample.com\n10.0.0.0/33   # not a network\n")
            let bad = try await run(["run", "--json", "--allow-hosts-file", file, "-e", "1"])
            #expect(bad.status == 64, "stderr: \(bad.stderr)")
            #expect(bad.stderr.contains("\"10.0.0.0/33\""), "the line's pattern, without its comment: \(bad.stderr)")
            #expect(bad.stdout.isEmpty)
        }
    }

    // MARK: - The hosts file

    @Test("--allow-hosts-file: one pattern a line, # comments and blank lines skipped, added to --allow-host")
    func hostsFile() async throws {
        try await withHostDirectory { directory in
            let file = directory + "/hosts.txt"
            try HostFiles.write(
                file,
                """
                # The test box: only its admin port.
                10.1.2.3:8443   # a comment after a pattern

                   # an indented comment
                # 10.9.9.9
                \tlocalhost\t

                """)
            let result = try await run([
                "run", "--allow-hosts-file", file, "--allow-host", "192.0.2.7:8443", "-e",
                Self.program([
                    "() => fetch('http://10.1.2.3/')", "() => fetch('http://10.9.9.9/')",
                    "() => resolver.resolve4('localhost')", "() => fetch('http://192.0.2.7/')",
                    "() => dns.promises.lookup('not-listed.example.net')",
                ]),
            ])
            #expect(result.status == 0, "stderr: \(result.stderr)")
            let codes = result.stdout.split(separator: "\n").map(String.init)
            #expect(codes.count == 5 && !codes.contains("ok"), "stdout: \(result.stdout)")
            let reasons = Self.denials(result.stderr).map { $0.split(separator: " ").prefix(2).joined(separator: " ") }
            #expect(
                reasons == [
                    // The file's IP rule, with its port list, despite the comment after it.
                    "portNotAllowed 10.1.2.3:80",
                    // A commented-out line allows nothing.
                    "addressNotAllowed 10.9.9.9:80",
                    // The file's name rule (tabs trimmed): resolved on the host, refused as loopback.
                    "privateAddress localhost",
                    // --allow-host still counts beside the file.
                    "portNotAllowed 192.0.2.7:80",
                    "nameNotAllowed not-listed.example.net",
                ], "stderr: \(result.stderr)")
        }
    }

    // MARK: - serve reloads on SIGHUP

    /// A server on port 3000 that asks the sandbox's DNS for `localhost`
    /// every 100 ms, one at a time, and prints each outcome.
    static let askingServer = """
        const dns = require('node:dns');
        require('node:http').createServer((request, response) => response.end('up')).listen(3000, '127.0.0.1');
        const resolver = new dns.promises.Resolver({ timeout: 2000, tries: 1 });
        (async () => {
          for (let n = 0; ; n++) {
            let outcome = 'ok';
            try { await resolver.resolve4('localhost'); } catch (error) { outcome = error.code; }
            console.log(`ask ${n} ${outcome}`);
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        })();
        """

    @Test("serve --allow-hosts-file: SIGHUP applies the edited file; a file that no longer parses changes nothing")
    func serveReloadsOnHangUp() async throws {
        try await withHostDirectory { directory in
            let file = directory + "/hosts.txt"
            let server = directory + "/server.js"
            try HostFiles.write(file, "10.1.2.3:8443  # localhost is not allowed yet\n")
            try HostFiles.write(server, Self.askingServer)
            try await withCLI(Self.cli, [
                "serve", server, "--port", "3000", "--allow-hosts-file", file, "--allow-host", "192.0.2.7:8443",
            ]) { program in
                try await program.stderr.waitUntilContains("ready", timeout: .seconds(30))
                let refusedByName = Self.denied + "nameNotAllowed localhost"
                let refusedByAddress = Self.denied + "privateAddress localhost"
                try await program.stderr.waitUntilContains(refusedByName, timeout: .seconds(10))

                // Allowed by name now: the host resolves it (to loopback, refused as such) instead of refusing the name.
                try HostFiles.overwrite(file, "# now it is\nlocalhost\n")
                kill(program.pid, SIGHUP)
                try await program.stderr.waitUntilContains(
                    "secure-exec: egress policy reloaded: 2 rule(s)", timeout: .seconds(10))
                try await program.stderr.waitUntilContains(refusedByAddress, timeout: .seconds(10))
                // Identical denials are one line a second: more than one shows the guest kept asking under the new policy.
                #expect(
                    await poll(for: .seconds(5)) { Self.count(refusedByAddress, in: program.stderr.text) >= 2 },
                    "the new policy keeps applying: \(program.stderr.text)")

                // A file that no longer parses: said so, and the policy in force stays (localhost still allowed by name).
                try HostFiles.overwrite(file, "exa mple.com\n")
                kill(program.pid, SIGHUP)
                try await program.stderr.waitUntilContains("secure-exec: egress policy not reloaded", timeout: .seconds(10))
                let before = Self.count(refusedByAddress, in: program.stderr.text)
                #expect(
                    await poll(for: .seconds(5)) { Self.count(refusedByAddress, in: program.stderr.text) > before },
                    "still allowed by name after the bad file: \(program.stderr.text)")

                let lines = program.stderr.lines
                let switched = try #require(lines.firstIndex { $0.hasPrefix(refusedByAddress) })
                #expect(
                    !lines[switched...].contains { $0.hasPrefix(refusedByName) },
                    "refused by name after the reload: \(program.stderr.text)")
                #expect(program.stdout.text.contains("ENOTFOUND"), "the guest saw ordinary errors: \(program.stdout.text)")
                #expect(!program.stdout.text.contains(" ok"), "localhost never resolved for the guest: \(program.stdout.text)")

                kill(program.pid, SIGINT)
                let (status, _) = try await program.waitForExit(timeout: .seconds(10))
                #expect(status == 0, "SIGHUP did not end serve; SIGINT did, cleanly: \(program.stderr.text)")
            }
        }
    }

    static func count(_ prefix: String, in text: String) -> Int {
        text.split(separator: "\n").filter { $0.hasPrefix(prefix) }.count
    }
}
