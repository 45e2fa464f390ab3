import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where the pieces a sandbox is built from live on this host: the init
/// program, the rootfs skeleton and the `node` binary.
///
/// Each is found, in order, from an explicit path, an environment variable
/// (`SECURE_EXEC_INIT`, `SECURE_EXEC_ROOTFS`, `SECURE_EXEC_NODE`), next to
/// the running executable (a build folder, or an installed `bin/` with
/// `libexec/secure-exec` and `share/secure-exec` beside it), and finally the
/// source checkout this library was built from.
package struct RuntimeAssets: Sendable {
    package var initProgram: String
    package var skeleton: String
    package var node: String

    package static func locate(node explicitNode: String?) throws(SecureExecError) -> RuntimeAssets {
        let files = try locateSandboxFiles()
        return RuntimeAssets(initProgram: files.initProgram, skeleton: files.skeleton, node: try locateNode(explicitNode))
    }

    /// The init program and the skeleton, which every sandbox needs whatever its root.
    static func locateSandboxFiles() throws(SecureExecError) -> (initProgram: String, skeleton: String) {
        let environment = ProcessInfo.processInfo.environment
        let executableDirectory = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            .map { ($0 as NSString).deletingLastPathComponent } ?? ""
        // <package root>/Sources/SecureExec/Supervisor/RuntimeAssets.swift -> the package root.
        let sourcePath = #filePath
        let checkout = sourcePath.range(of: "/Sources/", options: .backwards).map { String(sourcePath[..<$0.lowerBound]) } ?? ""

        let initCandidates = [
            environment["SECURE_EXEC_INIT"],
            executableDirectory + "/secure-exec-init",
            executableDirectory + "/../libexec/secure-exec/secure-exec-init",
            checkout + "/.build/debug/secure-exec-init",
            checkout + "/.build/release/secure-exec-init",
        ]
        guard let initProgram = firstExisting(initCandidates, executable: true) else {
            throw SecureExecError(
                .unsupportedHost,
                "the sandbox init program (secure-exec-init) was not found; build the package (`swift build`) or set SECURE_EXEC_INIT",
                step: "locate secure-exec-init")
        }
        let skeletonCandidates = [
            environment["SECURE_EXEC_ROOTFS"],
            executableDirectory + "/../share/secure-exec/rootfs",
            checkout + "/rootfs/skeleton",
        ]
        guard let skeleton = firstExisting(skeletonCandidates, executable: false) else {
            throw SecureExecError(
                .unsupportedHost, "the guest root skeleton (rootfs/skeleton) was not found; set SECURE_EXEC_ROOTFS",
                step: "locate rootfs skeleton")
        }
        return (initProgram, skeleton)
    }

    /// The host's node: `explicitNode`, else `SECURE_EXEC_NODE`, else the first on PATH.
    static func locateNode(_ explicitNode: String?) throws(SecureExecError) -> String {
        let environment = ProcessInfo.processInfo.environment
        var nodeCandidates: [String?] = [explicitNode, environment["SECURE_EXEC_NODE"]]
        if explicitNode == nil {
            let path = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
            nodeCandidates += path.split(separator: ":").map { "\($0)/node" }
        }
        guard let node = firstExisting(explicitNode.map { [$0] } ?? nodeCandidates, executable: true) else {
            throw SecureExecError(
                .unsupportedHost,
                explicitNode.map { "no executable node at \($0)" }
                    ?? "node was not found on PATH; install Node.js (`apt-get install nodejs`) or set SECURE_EXEC_NODE",
                step: "locate node")
        }
        return node
    }

    private static func firstExisting(_ candidates: [String?], executable: Bool) -> String? {
        for case let candidate? in candidates where !candidate.isEmpty {
            let resolved = (candidate as NSString).standardizingPath
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: resolved, isDirectory: &isDirectory) else { continue }
            if executable {
                if !isDirectory.boolValue && access(resolved, X_OK) == 0 { return resolved }
            } else if isDirectory.boolValue {
                return resolved
            }
        }
        return nil
    }
}
