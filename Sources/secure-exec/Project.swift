import ArgumentParser
import Foundation
import SecureExec

/// What `run` and `serve` start: inline code, one file, or a project directory.
///
/// A directory becomes the sandbox's `/workspace` by mount, not by copy (an
/// overlay by default: the guest's changes never reach the host; or read-write
/// with `--project-mode rw`), `node_modules` included. Its entry is
/// `package.json`'s `main`, else `index.js`, read inside the sandbox, so no
/// symlink in the project is ever followed on the host.
enum Project {
    case code(String)
    case directory(path: String)

    static func load(path: String) throws -> Project {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ValidationError("\(path.debugDescription) does not exist")
        }
        if !isDirectory.boolValue {
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
            else { throw ValidationError("cannot read \(path.debugDescription) as UTF-8 text") }
            return .code(text)
        }
        return .directory(path: absolutePath(path))
    }

    /// `path` made absolute against the current directory, without resolving symlinks.
    static func absolutePath(_ path: String) -> String {
        let expanded = (path as NSString).expandingTildeInPath
        let absolute = expanded.hasPrefix("/") ? expanded : FileManager.default.currentDirectoryPath + "/" + expanded
        // Lexical clean-up only ("a/./b", "a//b", a trailing "/"); ".." stays for the kernel to resolve.
        let parts = absolute.split(separator: "/").filter { $0 != "." }
        return "/" + parts.joined(separator: "/")
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
