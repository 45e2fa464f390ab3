import BenchmarkWorkloads
import Foundation
import SecureExec

extension Comparison {
    /// A 1,000-file project made ready in a sandbox: uploaded byte by byte
    /// with `files:` (how the CLI started projects before issue 10) against
    /// shown by mount as an overlay `workspace:`, alternated round by round.
    /// Each sample is `create()` until it returns, plus a guest that reads
    /// one file of the project (so the files are really there); dispose is
    /// outside the sample.
    func projectStart() async throws {
        let directory = host.scratch + "/project-1000"
        try? FileManager.default.removeItem(atPath: directory)
        var files: [String: [UInt8]] = [:]
        for index in 0..<1000 {
            let relative = "src/module-\(index / 100)/file-\(index).js"
            let bytes = Array("module.exports = \(index); // \(String(repeating: "x", count: 1000))\n".utf8)
            files["/workspace/" + relative] = bytes
            let path = directory + "/" + relative
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        }
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let check = #"console.log(require("/workspace/src/module-9/file-999.js"))"#

        var copied = Samples()
        var mounted = Samples()
        for round in 0..<options.rounds {
            for contender in rotated(["copy", "overlay"], by: round) {
                let started = monotonicNanos()
                let runtime =
                    contender == "copy"
                    ? try await NodeRuntime.create(files: files)
                    : try await NodeRuntime.create(workspace: Workspace(host: directory))
                let result = try await runtime.exec(check)
                let elapsed = milliseconds(from: started, to: monotonicNanos())
                await runtime.dispose()
                guard result.stdoutText == "999\n" else {
                    throw BenchmarkFailure("the \(contender) project did not run: \(result.stderrText)")
                }
                if contender == "copy" { copied.add(elapsed) } else { mounted.add(elapsed) }
            }
        }
        projectRows = [
            ["1,000 files uploaded with files: (copy)", String(format: "%.1f", copied.median), "1.00"],
            [
                "the same folder as workspace: overlay (mount)", String(format: "%.1f", mounted.median),
                String(format: "%.2f", mounted.median / copied.median),
            ],
        ]
    }
}
