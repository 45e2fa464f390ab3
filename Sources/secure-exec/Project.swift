import ArgumentParser
import Foundation

/// What `run` and `serve` start: inline code, one file, or a project directory.
///
/// A directory is uploaded as the workspace (every file but `node_modules`
/// and `.git`), its `node_modules`, if any, is mounted read-only where
/// Node's resolution finds it, and its entry is `package.json`'s `main`,
/// else `index.js`.
enum Project {
    case code(String)
    case directory(files: [String: [UInt8]], entry: String, nodeModules: String?)

    static let uploadLimit = 64 << 20

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
        let root = URL(fileURLWithPath: path).standardizedFileURL
        var files: [String: [UInt8]] = [:]
        var total = 0
        let walker = FileManager.default.enumerator(
            at: root, includingPropertiesForKeys: [.isRegularFileKey, .isDirectoryKey], options: [])
        while let url = walker?.nextObject() as? URL {
            let relative = String(url.standardizedFileURL.path.dropFirst(root.path.count + 1))
            if relative == "node_modules" || relative == ".git" {
                walker?.skipDescendants()
                continue
            }
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true else { continue }
            let bytes = try Array(Data(contentsOf: url))
            total += bytes.count
            guard total <= uploadLimit else {
                throw ValidationError("\(path) holds more than \(uploadLimit >> 20) MiB outside node_modules; mount it instead")
            }
            files["/workspace/" + relative] = bytes
        }
        var entry = "index.js"
        if let manifest = files["/workspace/package.json"],
            let object = try? JSONSerialization.jsonObject(with: Data(manifest)) as? [String: Any],
            let main = object["main"] as? String
        {
            entry = main.hasPrefix("./") ? String(main.dropFirst(2)) : main
        }
        guard files["/workspace/" + entry] != nil else {
            throw ValidationError("\(path) has no entry: package.json \"main\" or index.js")
        }
        let modules = root.appendingPathComponent("node_modules").path
        return .directory(
            files: files, entry: "/workspace/" + entry,
            nodeModules: FileManager.default.fileExists(atPath: modules) ? modules : nil)
    }
}
