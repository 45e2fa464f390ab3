import BenchmarkWorkloads
import Foundation
import SecureExec

extension Comparison {
    /// Moving a whole file between host and sandbox, at each of
    /// `options.fileSizes`: `readFile` of a file the guest wrote, and a
    /// collected `fetch` of the same file from a guest server. The guest's own
    /// `fs.readFileSync` of it is the floor. Each row is the median of
    /// `options.fileRounds` rounds; the time per MiB staying flat as the size
    /// grows is what "linear" means (issue 13).
    func fileTransfers() async throws {
        let largest = options.fileSizes.max() ?? 0
        // Room for the file in the workspace; the tmpfs pages are charged to
        // the sandbox's memory cgroup, next to the guest server and the guest
        // reading the file into one buffer.
        let limits = Limits(
            memoryBytes: max(512 << 20, 3 * largest + (256 << 20)), workspaceBytes: max(64 << 20, largest + (32 << 20)))
        let runtime = try await NodeRuntime.create(permissions: Permissions(network: .allow), limits: limits)
        do {
            try await fileTransfers(in: runtime)
        } catch {
            await runtime.dispose()
            throw error
        }
        await runtime.dispose()
    }

    private func fileTransfers(in runtime: NodeRuntime) async throws {
        let server = try await runtime.spawn(
            """
            const http = require("node:http");
            const fs = require("node:fs");
            http.createServer((req, res) => {
              const path = "/workspace" + req.url;
              fs.stat(path, (error, info) => {
                if (error) { res.writeHead(404); res.end(); return; }
                res.writeHead(200, { "content-length": info.size });
                fs.createReadStream(path, { highWaterMark: 1 << 20 }).pipe(res);
              });
            }).listen(3000, "127.0.0.1");
            """)
        try await runtime.waitForListener(port: 3000, process: server)
        for size in options.fileSizes {
            let name = "blob-\(size)"
            let path = "/workspace/" + name
            // The guest writes it: the benchmark times reading only.
            let made = try await runtime.exec(
                #"require("node:fs").writeFileSync("\#(path)", Buffer.alloc(\#(size), 0x61)); console.log("ok")"#)
            guard made.stdoutText == "ok\n" else { throw BenchmarkFailure("the guest could not write \(size) bytes: \(made.stderrText)") }

            var reads = Samples()
            var fetches = Samples()
            var guestReads = Samples()
            for _ in 0..<options.fileRounds {
                var started = monotonicNanos()
                let bytes = try await runtime.readFile(path, maxBytes: size)
                reads.add(milliseconds(from: started, to: monotonicNanos()))
                try Self.check(bytes, size: size, what: "readFile")

                started = monotonicNanos()
                let response = try await runtime.fetch(
                    3000, path: "/" + name, timeout: .seconds(600), maxBodyBytes: size)
                fetches.add(milliseconds(from: started, to: monotonicNanos()))
                guard response.status == 200 else { throw BenchmarkFailure("GET /\(name) answered \(response.status)") }
                try Self.check(response.body, size: size, what: "fetch")

                let timed = try await runtime.exec(
                    """
                    const started = process.hrtime.bigint();
                    const bytes = require("node:fs").readFileSync("\(path)");
                    console.log(bytes.length, Number(process.hrtime.bigint() - started) / 1e6);
                    """)
                let fields = timed.stdoutText.split(whereSeparator: \.isWhitespace)
                guard fields.count == 2, Int(fields[0]) == size, let guestMilliseconds = Double(fields[1]) else {
                    throw BenchmarkFailure("the guest's own read of \(size) bytes: \(timed.stdoutText) \(timed.stderrText)")
                }
                guestReads.add(guestMilliseconds)
            }
            try await runtime.remove(path)
            fileRows.append(
                FileTransferRow(size: size, readFile: reads, fetch: fetches, guestRead: guestReads))
            say("  \(Format.size(size)): readFile \(Format.number(reads.median)) ms, fetch \(Format.number(fetches.median)) ms, guest \(Format.number(guestReads.median)) ms")
        }
        server.kill()
        _ = try await server.wait()
        addLinearityGoal()
    }

    private static func check(_ bytes: [UInt8], size: Int, what: String) throws {
        guard bytes.count == size, bytes.first.map({ $0 == 0x61 }) ?? true, bytes.last.map({ $0 == 0x61 }) ?? true else {
            throw BenchmarkFailure("\(what) returned \(bytes.count) bytes, expected \(size) bytes of \"a\"")
        }
    }

    /// Linear means the time per MiB of the largest size is within 3× of
    /// that of the smallest one of at least 16 MiB (below it, fixed costs
    /// dominate; caches and page faults make large sizes somewhat dearer per
    /// MiB, while quadratic time would make 256 MiB 16× dearer than 16 MiB).
    private func addLinearityGoal() {
        let measured = fileRows.filter { $0.size >= 16 << 20 }
        guard let smallest = measured.min(by: { $0.size < $1.size }), let largest = measured.max(by: { $0.size < $1.size }),
            largest.size > smallest.size
        else { return }
        for (what, base, top) in [
            ("readFile", smallest.readFile.median, largest.readFile.median),
            ("collected fetch", smallest.fetch.median, largest.fetch.median),
        ] {
            let perMiBBase = base / Double(smallest.size >> 20)
            let perMiBTop = top / Double(largest.size >> 20)
            goals.append(
                GoalOutcome(
                    goal: "\(what) time grows linearly with the size (issue 13)",
                    holds: perMiBTop <= 3 * perMiBBase,
                    evidence: String(
                        format: "%.2f ms/MiB at %@, %.2f ms/MiB at %@", perMiBBase, Format.size(smallest.size), perMiBTop,
                        Format.size(largest.size))))
        }
    }
}

/// One size of the `files` workload: medians in ms.
struct FileTransferRow {
    var size: Int
    var readFile: Samples
    var fetch: Samples
    var guestRead: Samples

    static let header = [
        "size", "readFile ms", "readFile MiB/s", "collected fetch ms", "fetch MiB/s", "guest readFileSync ms",
    ]

    var cells: [String] {
        let mebibytes = Double(size) / Double(1 << 20)
        return [
            Format.size(size), Format.number(readFile.median), Format.number(mebibytes / readFile.median * 1000, digits: 0),
            Format.number(fetch.median), Format.number(mebibytes / fetch.median * 1000, digits: 0),
            Format.number(guestRead.median),
        ]
    }
}
