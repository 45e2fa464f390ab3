import Foundation

/// The executables built beside the test bundle (`swift build --build-tests`
/// puts them in the same folder, which is also where the runtime finds
/// `secure-exec-init`).
enum BuildProducts {
    /// The folder holding the running test bundle.
    static var directory: String {
        let executable = HostCensus.readLink("/proc/self/exe") ?? CommandLine.arguments[0]
        return (executable as NSString).deletingLastPathComponent
    }

    /// The path of the built product `name` (e.g. "dev-server-example").
    static func path(_ name: String) -> String { directory + "/" + name }
}
