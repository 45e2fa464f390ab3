import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where the package's sources and its built products are.
public enum PackagePaths {
    /// The package root: this file is `<root>/Tests/TestSupport/PackagePaths.swift`.
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The folder holding the running test bundle and the package's other
    /// products (`swift build --build-tests` puts them together, which is
    /// also where the runtime finds `secure-exec-init`).
    public static var products: String {
        let executable = HostCensus.readLink("/proc/self/exe") ?? CommandLine.arguments[0]
        return (executable as NSString).deletingLastPathComponent
    }

    /// The path of the built product `name` (e.g. "dev-server-example").
    public static func product(_ name: String) -> String { products + "/" + name }

    /// The path of the built executable `name`; throws (so the test fails,
    /// never skips) with how to build it when it is missing.
    public static func requireProduct(_ name: String) throws -> String {
        let path = product(name)
        guard access(path, X_OK) == 0 else { throw TestFailure("\(path) is missing: build with `swift build --build-tests`") }
        return path
    }
}
