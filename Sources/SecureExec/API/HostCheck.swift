
/// Whether this host can run SecureExec sandboxes, and why not.
///
/// Made by `NodeRuntime.checkHost(node:)`; `secure-exec check` prints one.
public struct HostReport: Sendable {
    /// One checked fact.
    public struct Check: Sendable {
        /// What was checked: "root", "user namespaces", "seccomp", "pidfd", "kernel",
        /// "cgroup memory", "cgroup pids", "node" or "sandbox".
        public var name: String
        /// Whether the fact holds.
        public var ok: Bool
        /// A missing required fact means no sandbox can be made.
        public var required: Bool
        /// What was found, in words (a version, a path, the error).
        public var detail: String
        /// What to do about it, in words, when not ok.
        public var fix: String?
    }

    /// Every fact checked, in the order checked; the end-to-end sandbox, when
    /// one was made, last.
    public var checks: [Check]
    /// The node the sandbox runs (`process.version` inside a real sandbox), if one could be made.
    public var nodeVersion: String?
    /// The host path of that node binary, if found.
    public var nodePath: String?

    /// True when every required check passed.
    public var canRunSandboxes: Bool { checks.allSatisfy { $0.ok || !$0.required } }
}

extension NodeRuntime {
    /// Checks this host: root, user namespaces, seccomp, pidfd, kernel
    /// version, cgroup controllers, and finally an end-to-end sandbox that
    /// runs `node` and reports its version (the check that proves the rest).
    ///
    /// It never throws: each failure is a `Check` that is not ok. The sandbox
    /// is made only when every required fact holds, and without cgroup limits
    /// when a cgroup controller is missing. Run as root: without it the
    /// report says so and makes no sandbox.
    public static func checkHost(node: String? = nil) async -> HostReport {
        var checks = HostProbe.facts().map {
            HostReport.Check(name: $0.name, ok: $0.ok, required: $0.required, detail: $0.detail, fix: $0.fix)
        }
        var version: String?
        var path: String?
        do {
            path = try RuntimeAssets.locate(node: node).node
        } catch {
            checks.append(HostReport.Check(name: "node", ok: false, required: true, detail: error.message, fix: error.message))
        }
        if path != nil && checks.allSatisfy({ $0.ok || !$0.required }) {
            let cgroupsUsable = checks.filter { $0.name.hasPrefix("cgroup") }.allSatisfy(\.ok)
            let limits = cgroupsUsable ? Limits() : Limits(memoryBytes: nil, maxProcesses: nil)
            do {
                let result = try await withNodeRuntime(limits: limits, node: node) { runtime in
                    try await runtime.exec("process.stdout.write(process.version)", timeout: .seconds(20))
                }
                if result.exitCode == 0 {
                    version = result.stdoutText
                    checks.append(
                        HostReport.Check(name: "node", ok: true, required: true, detail: "\(path!) \(result.stdoutText)", fix: nil))
                    checks.append(
                        HostReport.Check(
                            name: "sandbox", ok: true, required: true,
                            detail: "a sandbox ran node \(result.stdoutText) in \(result.duration)", fix: nil))
                } else {
                    checks.append(
                        HostReport.Check(
                            name: "sandbox", ok: false, required: true,
                            detail: "node in a sandbox \(result.termination): \(result.stderrText.suffix(300))",
                            fix: "see the error above; `node -e 0` must work on the host"))
                }
            } catch let error as SecureExecError {
                checks.append(
                    HostReport.Check(
                        name: "sandbox", ok: false, required: true, detail: error.description,
                        fix: "the failing step is named above"))
            } catch {
                checks.append(HostReport.Check(name: "sandbox", ok: false, required: true, detail: "\(error)", fix: nil))
            }
            if checks.last?.ok == true { checks.append(await HostReport.egressCheck(limits: limits, node: node)) }
        }
        return HostReport(checks: checks, nodeVersion: version, nodePath: path)
    }
}

extension HostReport {
    /// Egress (`.allow(egress:)`): a sandbox with an empty policy, whose guest
    /// asks the sandbox's DNS for a name and must be refused. Not required:
    /// only runtimes with egress need nf_tables and IPv6.
    static func egressCheck(limits: Limits, node: String?) async -> Check {
        let fix = "egress needs nf_tables with NAT and redirect (CONFIG_NF_TABLES, CONFIG_NFT_NAT, CONFIG_NFT_REDIR) and IPv6 in the kernel"
        do {
            let result = try await withNodeRuntime(
                permissions: Permissions(network: .allow(egress: EgressPolicy())), limits: limits, node: node
            ) { runtime in
                try await runtime.exec(
                    "require('dns').promises.lookup('check.invalid').then(() => 'resolved', (e) => e.code).then((c) => process.stdout.write(c))",
                    timeout: .seconds(20))
            }
            let ok = result.exitCode == 0 && result.stdoutText == "ENOTFOUND"
            return Check(
                name: "egress", ok: ok, required: false,
                detail: ok
                    ? "the sandbox's DNS refused a name no rule allows"
                    : "a guest's lookup gave \(result.stdoutText.debugDescription): \(result.stderrText.suffix(300))",
                fix: ok ? nil : fix)
        } catch {
            return Check(name: "egress", ok: false, required: false, detail: "\(error)", fix: fix)
        }
    }
}

extension NodeRuntime {
    /// Removes what supervisors that died without disposing left behind on
    /// this machine (their empty sandbox cgroups), and says what it removed,
    /// one line each. Live sandboxes, of this process or any other, are never
    /// touched. Each process also does this once before its first sandbox;
    /// uid ranges need nothing (the kernel releases a dead holder's lease).
    public static func reclaimLeftovers() -> [String] {
        Leftovers.reclaim()
    }
}
