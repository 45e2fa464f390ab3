import Foundation
import SecureExec
import TestSupport
import Testing

/// Node's own `child_process` finds what it expects on a Linux machine in
/// the `.standard` root: `/bin/sh` for `exec`, `execSync` and `shell: true`,
/// and `cat` and `sh` on PATH, as Node's own tests use them (e.g.
/// `test/parallel/test-http-chunk-problem.js` pipes through `cat` and
/// spawns `sh -c`). In `.minimal` there is no shell: the error names it.
@Suite("Guest system: node's child_process with a shell and tools", .needsRoot, .timeLimit(.minutes(1)))
struct NodeChildProcessTests {
    static let probe = """
        const cp = require("node:child_process");
        const collect = (child) => new Promise((resolve) => {
          let out = "";
          child.stdout.on("data", (chunk) => { out += chunk; });
          child.on("close", (code) => resolve({ out, code }));
        });
        (async () => {
          // Each child's output is collected from the start: one that closes first is not missed.
          const catChild = cp.spawn("cat");
          catChild.stdin.end("piped through cat");
          const cat = collect(catChild);
          const sh = collect(cp.spawn("sh", ["-c", "echo hi from sh"]));
          const shell = collect(cp.spawn("echo $((6 * 7))", { shell: true }));
          const piped = new Promise((resolve) =>
            cp.exec(`"${process.execPath}" -e "console.log('through a pipe')" | cat`, (error, stdout) =>
              resolve(error ? String(error) : stdout)));
          const counted = new Promise((resolve) =>
            cp.exec("mkdir -p d && touch d/a d/b d/c && ls d | wc -l", (error, stdout) => resolve(error ? String(error) : stdout.trim())));
          console.log(JSON.stringify({
            cat: await cat,
            sh: await sh,
            shell: await shell,
            piped: await piped,
            counted: await counted,
            sync: cp.execSync("echo sync").toString(),
          }));
        })();
        """

    struct Outcome: Decodable, Equatable {
        struct Child: Decodable, Equatable {
            var out: String
            var code: Int
        }
        var cat: Child
        var sh: Child
        var shell: Child
        var piped: String
        var counted: String
        var sync: String
    }

    @Test("spawn('cat'), spawn('sh', ['-c', ...]), shell: true, exec with pipes and execSync all work")
    func shellAndTools() async throws {
        let result = try await withRuntime(permissions: Permissions(childProcess: .allow)) { runtime in
            try await runtime.exec(Self.probe)
        }
        #expect(result.termination == .exited(0), "\(result.summary)")
        let outcome = try #require(try? JSONDecoder().decode(Outcome.self, from: Data(result.stdout)), "\(result.summary)")
        #expect(
            outcome
                == Outcome(
                    cat: .init(out: "piped through cat", code: 0), sh: .init(out: "hi from sh\n", code: 0),
                    shell: .init(out: "42\n", code: 0), piped: "through a pipe\n", counted: "3", sync: "sync\n"))
    }

    @Test("in .minimal, exec fails with ENOENT for /bin/sh, the shell it lacks")
    func minimalHasNoShell() async throws {
        let result = try await withRuntime(root: .minimal, permissions: Permissions(childProcess: .allow)) { runtime in
            try await runtime.exec(
                #"require("child_process").exec("echo hi", (error) => console.log(error ? error.code + " " + error.message : "ran"));"#)
        }
        #expect(result.stdoutText.hasPrefix("ENOENT"), "\(result.summary)")
        #expect(result.stdoutText.contains("/bin/sh"), "\(result.summary)")
    }
}
