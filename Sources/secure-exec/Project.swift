import ArgumentParser
import Foundation
import SecureExec

/// What `run` and `serve` start: inline code, one file, or a project directory.
///
/// A file is mounted read-only into the workspace and run from there, so
/// the host never reads it (a symlink in its path is refused, not followed).
/// A directory becomes the sandbox's `/workspace` by mount, not by copy (an
/// overlay by default: the guest's changes never reach the host; or read-write
/// with `--project-mode rw`), `node_modules` included. Its entry is
/// `package.json`'s `main`, else `index.js`, read inside the sandbox, so no
/// symlink in the project is ever followed on the host.
enum Project {
    case code(String)
    /// One script, mounted read-only at /workspace/<its name> (never read on the host).
    case file(path: String)
    case directory(path: String)
    /// No project: an empty workspace (`run --command` alone).
    case empty

    static func load(path: String) throws -> Project {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ValidationError("\(path.debugDescription) does not exist")
        }
        return isDirectory.boolValue ? .directory(path: absolutePath(path)) : .file(path: absolutePath(path))
    }

    /// `path` made absolute against the current directory and normalized
    /// lexically ("a/./b", "a//b", "a/../b", a trailing "/"), without
    /// resolving symlinks: SecureExec refuses any symlink in a host path, so
    /// where there is none, the lexical result is the real one.
    static func absolutePath(_ path: String) -> String {
        let expanded = (path as NSString).expandingTildeInPath
        let absolute = expanded.hasPrefix("/") ? expanded : FileManager.default.currentDirectoryPath + "/" + expanded
        var parts: [Substring] = []
        for part in absolute.split(separator: "/") where part != "." {
            if part == ".." {
                _ = parts.popLast()
            } else {
                parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// The mount a `.file` project needs, and the guest path it runs from.
    static func scriptMount(_ path: String) -> (mount: Mount, guestPath: String) {
        let guestPath = "/workspace/" + (path as NSString).lastPathComponent
        return (Mount(host: path, guest: guestPath), guestPath)
    }

    /// The guest path of the project's entry, read inside the sandbox.
    static func entry(in runtime: NodeRuntime, project: String) async throws -> String {
        var entry = "index.js"
        if let manifest = try? await runtime.readFile("/workspace/package.json", maxBytes: 1 << 20),
            let object = try? JSONSerialization.jsonObject(with: Data(manifest)) as? [String: Any],
            let main = object["main"] as? String, !main.isEmpty
        {
            entry = main.hasPrefix("./") ? String(main.dropFirst(2)) : main
        }
        let path = "/workspace/" + entry
        let parent = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        let listing = (try? await runtime.readDirectory(parent)) ?? []
        guard listing.contains(where: { $0.name == name }) else {
            throw ValidationError("\(project) has no entry: package.json \"main\" or index.js")
        }
        return path
    }
}
