import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Whether this test process may build sandboxes.
///
/// Sandboxes write uid maps for their own range of host ids, which only root
/// may do. Suites that create runtimes are enabled when `isRoot`, or when
/// `isCI` so that a CI job that lost its privileges fails instead of
/// skipping everything silently.
enum Privileges {
    /// The effective uid is 0.
    static var isRoot: Bool { geteuid() == 0 }
    /// The environment says this is a CI run (`CI=true`).
    static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }
}
