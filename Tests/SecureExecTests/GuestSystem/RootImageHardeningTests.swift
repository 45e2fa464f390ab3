import Foundation
import SecureExec
import TestSupport
import Testing

/// What a root image must not show or allow, found by attacking it.
@Suite("Root images: what stays out", .needsRoot, .timeLimit(.minutes(2)))
struct RootImageHardeningTests {
    static let commands = Permissions(childProcess: .allow)

    @Test(".host hides /usr's own configuration (npm's global npmrc), and npm reads no host config")
    func hostConfigurationHidden() async throws {
        try await withRuntime(root: .host, permissions: Self.commands) { runtime in
            let result = try await runtime.exec(
                """
                const fs = require("node:fs");
                const seen = {};
                for (const directory of ["/usr/etc", "/usr/local/etc"]) {
                  try { seen[directory] = fs.readdirSync(directory); } catch (error) { seen[directory] = error.code; }
                }
                seen.globalconfig = process.env.npm_config_globalconfig;
                console.log(JSON.stringify(seen));
                """)
            let seen = try JSONSerialization.jsonObject(with: Data(result.stdout)) as? [String: Any] ?? [:]
            for directory in ["/usr/etc", "/usr/local/etc"] {
                if let listing = seen[directory] as? [String] { #expect(listing.isEmpty, "\(directory): \(listing)") }
            }
            #expect(seen["globalconfig"] as? String == "/etc/npmrc", "\(result.stdoutText)")
        }
    }

    @Test(".directory refuses the host's own root and directories holding SecureExec's state")
    func directoryNotTheHost() async throws {
        for path in ["/", "/run"] {
            await expectError(.invalidArgument, mentioning: "prepared root") {
                let runtime = try await NodeRuntime.create(root: .directory(path))
                await runtime.dispose()
            }
        }
    }

    @Test("spawnExecutable cannot run init's own files through /proc magic links")
    func noMagicLinks() async throws {
        try await withRuntime(permissions: Self.commands) { runtime in
            for path in ["/proc/self/exe", "/proc/1/exe", "/proc/self/fd/0"] {
                await expectError(.spawnFailed) {
                    let process = try await runtime.spawnExecutable(path)
                    _ = try await process.wait()
                }
            }
        }
    }

    @Test("an interpreter name a guest wrote reaches the host's error with control characters replaced")
    func interpreterNameSanitized() async throws {
        // In a project workspace, where programs may run (the default /workspace is noexec).
        try await withPrivateHostDirectory { directory in
            try HostFiles.write(
                "\(directory)/tool", "#!/nope/\u{1B}[31mred\r\n", owner: MountIDs.owner, group: MountIDs.group, mode: 0o755)
            try await withRuntime(permissions: Self.commands, workspace: Workspace(host: directory)) { runtime in
                let error = await expectError(.spawnFailed, mentioning: "/nope/") {
                    let process = try await runtime.spawnExecutable("/workspace/tool")
                    _ = try await process.wait()
                }
                let message = error?.description ?? ""
                #expect(!message.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" }, "\(message.debugDescription)")
            }
        }
    }
}
