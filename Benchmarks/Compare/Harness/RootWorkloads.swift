import BenchmarkWorkloads
import Foundation
import SecureExec

extension Comparison {
    /// What the bigger root costs: cold start (create + spawn + wait +
    /// dispose) and spawn to the first stdout byte in an existing runtime,
    /// with `.standard` (node, npm, busybox and its ~70 links) against
    /// `.minimal` (node only), alternated round by round; and, in
    /// `.standard` only, a shell command to its first byte.
    func roots() async throws {
        let images: [(name: String, root: RootImage)] = [("standard", .standard), ("minimal", .minimal)]
        var cold: [String: [ColdStart]] = [:]
        var first: [String: Samples] = [:]
        var command = Samples()
        // Warm-up: page cache, the sealed init image, Dispatch's threads.
        for image in images { _ = try await SecureExecRuns.coldStart(root: image.root) }
        for round in 0..<options.rounds {
            for image in rotated(images, by: round) {
                cold[image.name, default: []].append(try await SecureExecRuns.coldStart(root: image.root))
            }
        }
        var runtimes: [String: NodeRuntime] = [:]
        for image in images {
            runtimes[image.name] = try await NodeRuntime.create(root: image.root, permissions: .init(childProcess: .allow))
        }
        do {
            for image in images { _ = try await SecureExecRuns.firstByte(in: runtimes[image.name]!) }
            _ = try await SecureExecRuns.commandFirstByte(in: runtimes["standard"]!, command: "echo ready")
            for round in 0..<options.rounds {
                for contender in rotated(images.map(\.name) + ["command"], by: round) {
                    if contender == "command" {
                        command.add(try await SecureExecRuns.commandFirstByte(in: runtimes["standard"]!, command: "echo ready"))
                    } else {
                        first[contender, default: Samples()].add(try await SecureExecRuns.firstByte(in: runtimes[contender]!).total)
                    }
                }
            }
        } catch {
            for runtime in runtimes.values { await runtime.dispose() }
            throw error
        }
        for runtime in runtimes.values { await runtime.dispose() }

        func median(_ values: [Double]) -> Double { Samples(values).median }
        func row(_ label: String, _ standard: Double, _ minimal: Double) -> [String] {
            [label, Format.number(standard), Format.number(minimal), String(format: "%+.1f", standard - minimal)]
        }
        let standard = cold["standard"] ?? [], minimal = cold["minimal"] ?? []
        rootRows = [
            row("cold start: create + spawn (exits at once) + wait + dispose", median(standard.map(\.total)), median(minimal.map(\.total))),
            row("  of which create()", median(standard.map(\.create)), median(minimal.map(\.create))),
            row("  of which spawn() → node's main", median(standard.map(\.toNodeMain)), median(minimal.map(\.toNodeMain))),
            row("  of which dispose()", median(standard.map(\.dispose)), median(minimal.map(\.dispose))),
            row(
                "spawn (node) → first stdout byte, existing runtime", (first["standard"] ?? Samples()).median,
                (first["minimal"] ?? Samples()).median),
            ["spawnCommand(\"echo ready\") → first stdout byte, existing runtime", Format.number(command.median), "n/a (no shell)", ""],
        ]
    }
}
