/// Rules for paths as the guest sees them, shared by every API that takes one.
package enum GuestPath {
    /// Absolute, without NUL, and normalized: no empty, `.` or `..` component
    /// (so `//`, a trailing `/` and relative tricks are refused). "/" itself is allowed.
    package static func isNormalizedAbsolute(_ path: String) -> Bool {
        guard path.hasPrefix("/"), !path.contains("\0") else { return false }
        if path == "/" { return true }
        return !path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
            .contains { $0.isEmpty || $0 == "." || $0 == ".." }
    }

    /// True when `path` is `area` or lies below it.
    package static func isInside(_ path: String, area: String) -> Bool {
        path == area || path.hasPrefix(area + "/")
    }

    /// `path` (absolute) with `.`, `..` and empty components resolved by text.
    /// In the guest's root, which SecureExec builds and holds no symlink on
    /// the way to a runtime file, that is where the kernel would arrive too.
    package static func lexicallyNormalized(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/") where part != "." {
            if part == ".." {
                _ = parts.popLast()
            } else {
                parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }
}
