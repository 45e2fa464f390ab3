import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Whether this test process may build sandboxes.
///
/// Sandboxes write uid maps for their own range of host ids, which only root
/// may do.
public enum Privileges {
    /// The effective uid is 0.
    public static var isRoot: Bool { geteuid() == 0 }
    /// The environment says this is a CI run (`CI=true`).
    public static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }
}

extension Trait where Self == ConditionTrait {
    /// For a suite that builds sandboxes: it runs as root, and under `CI=true`
    /// whoever runs it, so a CI job that lost its privileges fails instead of
    /// skipping everything silently.
    public static var needsRoot: Self {
        .enabled(if: Privileges.isRoot || Privileges.isCI, "builds sandboxes, which needs root (or CI=true to fail instead of skipping)")
    }
}
