import Foundation
import Testing

@testable import SecureExec

#if canImport(Glibc)
import Glibc
#endif

/// Where init, the root skeleton and node come from: a path set in
/// `SECURE_EXEC_INIT`, `SECURE_EXEC_ROOTFS` or `SECURE_EXEC_NODE` is the one
/// meant, so one that is missing or of the wrong kind is `.unsupportedHost`
/// naming the variable and the path, never skipped for another (README,
/// "Using SecureExec from your own package"). The environment is passed in:
/// nothing here changes this process's.
@Suite("Runtime assets: the environment's paths", .timeLimit(.minutes(1)))
struct RuntimeAssetsTests {
    /// A scratch folder with a plain (non-executable) file and a directory in it.
    final class Scratch {
        let path: String
        var plainFile: String { path + "/plain" }
        var directory: String { path + "/directory" }

        init() throws {
            path = NSTemporaryDirectory() + "runtime-assets-\(getpid())-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: path + "/directory", withIntermediateDirectories: true)
            try Data("not a program".utf8).write(to: URL(fileURLWithPath: path + "/plain"))
            chmod(path + "/plain", 0o644)
            // A "node" to find on PATH.
            try FileManager.default.createDirectory(atPath: path + "/bin", withIntermediateDirectories: true)
            try Data("#!/bin/sh\n".utf8).write(to: URL(fileURLWithPath: path + "/bin/node"))
            chmod(path + "/bin/node", 0o755)
        }

        deinit { try? FileManager.default.removeItem(atPath: path) }
    }

    /// An executable every Linux host has, standing in for init and node.
    static let anExecutable = "/bin/sh"

    func expectRefusal(
        _ environment: [String: String], naming variable: String, path: String, node: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let error = #expect(throws: SecureExecError.self, sourceLocation: sourceLocation) {
            try RuntimeAssets.locate(node: node, environment: environment)
        }
        #expect(error?.code == .unsupportedHost, "\(String(describing: error))", sourceLocation: sourceLocation)
        #expect(error?.message.contains(variable) == true, "does not name \(variable): \(String(describing: error))", sourceLocation: sourceLocation)
        #expect(error?.message.contains(path) == true, "does not name \(path): \(String(describing: error))", sourceLocation: sourceLocation)
        #expect(error?.step == "locate \(variable)", sourceLocation: sourceLocation)
    }

    @Test("SECURE_EXEC_INIT naming a missing file, a non-executable file or a directory is an error")
    func badInit() throws {
        let scratch = try Scratch()
        for path in ["/nonexistent/secure-exec-init", scratch.plainFile, scratch.directory] {
            expectRefusal(["SECURE_EXEC_INIT": path], naming: "SECURE_EXEC_INIT", path: path)
        }
    }

    @Test("SECURE_EXEC_ROOTFS naming a missing path or a file is an error")
    func badSkeleton() throws {
        let scratch = try Scratch()
        for path in ["/nonexistent/rootfs", scratch.plainFile] {
            expectRefusal(
                ["SECURE_EXEC_INIT": Self.anExecutable, "SECURE_EXEC_ROOTFS": path], naming: "SECURE_EXEC_ROOTFS", path: path)
        }
    }

    @Test("SECURE_EXEC_NODE naming a missing or non-executable file is an error, not a reason to search PATH")
    func badNode() throws {
        let scratch = try Scratch()
        for path in ["/nonexistent/node", scratch.plainFile, scratch.directory] {
            expectRefusal(
                [
                    "SECURE_EXEC_INIT": Self.anExecutable, "SECURE_EXEC_ROOTFS": scratch.directory, "SECURE_EXEC_NODE": path,
                    "PATH": "/usr/local/bin:/usr/bin:/bin",
                ], naming: "SECURE_EXEC_NODE", path: path)
        }
    }

    @Test("paths that are there are used as given; node passed to create wins over SECURE_EXEC_NODE")
    func goodPaths() throws {
        let scratch = try Scratch()
        let environment = [
            "SECURE_EXEC_INIT": Self.anExecutable, "SECURE_EXEC_ROOTFS": scratch.directory, "SECURE_EXEC_NODE": Self.anExecutable,
        ]
        let assets = try RuntimeAssets.locate(node: nil, environment: environment)
        #expect(assets.initProgram == Self.anExecutable)
        #expect(assets.skeleton == scratch.directory)
        #expect(assets.node == Self.anExecutable)

        var brokenNode = environment
        brokenNode["SECURE_EXEC_NODE"] = "/nonexistent/node"
        #expect(try RuntimeAssets.locate(node: Self.anExecutable, environment: brokenNode).node == Self.anExecutable)
    }

    @Test("a variable set to the empty string counts as unset")
    func emptyIsUnset() throws {
        let scratch = try Scratch()
        // With SECURE_EXEC_INIT empty, init is searched for as usual; whatever
        // that finds, the empty variable itself is never the complaint.
        do {
            _ = try RuntimeAssets.locate(
                node: Self.anExecutable, environment: ["SECURE_EXEC_INIT": "", "SECURE_EXEC_ROOTFS": scratch.directory])
        } catch {
            #expect(!error.message.contains("SECURE_EXEC_INIT is set"), "\(error)")
        }
        let assets = try RuntimeAssets.locate(
            node: nil,
            environment: [
                "SECURE_EXEC_INIT": Self.anExecutable, "SECURE_EXEC_ROOTFS": scratch.directory, "SECURE_EXEC_NODE": "",
                "PATH": "/nonexistent:" + scratch.path + "/bin",
            ])
        #expect(assets.node == scratch.path + "/bin/node")
    }
}
