import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where the pieces a sandbox is built from live on this host: the init
/// program, the rootfs skeleton and the `node` binary (busybox and npm, which
/// only `.standard` needs, are found by `GuestRoot`, the same way).
///
/// Each is found, in order, from an explicit path, an environment variable
/// (`SECURE_EXEC_INIT`, `SECURE_EXEC_ROOTFS`, `SECURE_EXEC_NODE`), next to
/// the running executable (a build folder, or an installed `bin/` with
/// `libexec/secure-exec` and `share/secure-exec` beside it), and finally the
/// source checkout this library was built from. A variable that is set must
/// name what it says: one that does not is an error, never skipped.
package struct RuntimeAssets: Sendable {
    package var initProgram: String
    package var skeleton: String
    package var node: String

    package static func locate(
        node explicitNode: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(SecureExecError) -> RuntimeAssets {
        let files = try locateSandboxFiles(environment: environment)
        return RuntimeAssets(
            initProgram: files.initProgram, skeleton: files.skeleton,
            node: try locateNode(explicitNode, environment: environment))
    }

    /// The init program and the skeleton, which every sandbox needs whatever its root.
    static func locateSandboxFiles(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(SecureExecError) -> (initProgram: String, skeleton: String) {
        let executableDirectory = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            .map { ($0 as NSString).deletingLastPathComponent } ?? ""
        // <package root>/Sources/SecureExec/Supervisor/RuntimeAssets.swift -> the package root.
        let sourcePath = #filePath
        let checkout = sourcePath.range(of: "/Sources/", options: .backwards).map { String(sourcePath[..<$0.lowerBound]) } ?? ""

        // A path the caller set is the one they meant: if it is not there, that
        // is an error, never a reason to quietly take another.
        let initProgram =
            try chosen("SECURE_EXEC_INIT", in: environment, executable: true, what: "the sandbox init program")
            ?? firstExisting(
                [
                    executableDirectory + "/secure-exec-init",
                    executableDirectory + "/../libexec/secure-exec/secure-exec-init",
                    checkout + "/.build/debug/secure-exec-init",
                    checkout + "/.build/release/secure-exec-init",
                ], executable: true)
        guard let initProgram else {
            throw SecureExecError(
                .unsupportedHost,
                "the sandbox init program (secure-exec-init) was not found; build the package (`swift build`) or set SECURE_EXEC_INIT",
                step: "locate secure-exec-init")
        }
        let skeleton =
            try chosen("SECURE_EXEC_ROOTFS", in: environment, executable: false, what: "the guest root skeleton")
            ?? firstExisting(
                [executableDirectory + "/../share/secure-exec/rootfs", checkout + "/rootfs/skeleton"], executable: false)
        guard let skeleton else {
            throw SecureExecError(
                .unsupportedHost, "the guest root skeleton (rootfs/skeleton) was not found; set SECURE_EXEC_ROOTFS",
                step: "locate rootfs skeleton")
        }
        return (initProgram, skeleton)
    }

    /// The host's node: `explicitNode`, else `SECURE_EXEC_NODE` (an error
    /// when it names no executable file), else the first on PATH.
    static func locateNode(
        _ explicitNode: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(SecureExecError) -> String {
        if let explicitNode {
            guard let node = firstExisting([explicitNode], executable: true) else {
                throw SecureExecError(.unsupportedHost, "no executable node at \(explicitNode)", step: "locate node")
            }
            return node
        }
        let path = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        let node =
            try chosen("SECURE_EXEC_NODE", in: environment, executable: true, what: "node")
            ?? firstExisting(path.split(separator: ":").map { "\($0)/node" }, executable: true)
        guard let node else {
            throw SecureExecError(
                .unsupportedHost,
                "node was not found on PATH; install Node.js (`apt-get install nodejs`) or set SECURE_EXEC_NODE",
                step: "locate node")
        }
        return node
    }

    /// The path environment variable `name` names, checked; nil when it is unset or empty.
    static func chosen(
        _ name: String, in environment: [String: String], executable: Bool, what: String
    ) throws(SecureExecError) -> String? {
        guard let value = environment[name], !value.isEmpty else { return nil }
        guard let found = firstExisting([value], executable: executable) else {
            let wanted = executable ? "an executable file" : "a directory"
            throw SecureExecError(
                .unsupportedHost, "\(name) is set to \(value.debugDescription), which is not \(wanted) (\(what))",
                step: "locate \(name)")
        }
        return found
    }

    private static func firstExisting(_ candidates: [String], executable: Bool) -> String? {
        for candidate in candidates where !candidate.isEmpty {
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
