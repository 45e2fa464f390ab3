import SecureExec
import TestSupport
import Testing

/// Node knows the runtime's memory limit: libuv reads it from a read-only
/// view of the sandbox's own cgroup (`process.constrainedMemory()`), and V8's
/// old space is sized from it, so a heap that keeps growing ends in node's
/// own "JavaScript heap out of memory" error instead of a kill by the kernel.
@Suite("Guest system: node knows its memory limit", .needsRoot, .timeLimit(.minutes(2)))
struct GuestMemoryLimitTests {
    static let memoryBytes = 256 << 20
    static let limits = Limits(memoryBytes: memoryBytes)

    struct MemoryView: Decodable {
        let constrained: Double
        let heapLimit: Double
        let execArgv: [String]
    }

    static let memoryView = """
        console.log(JSON.stringify({
          constrained: process.constrainedMemory(),
          heapLimit: require("v8").getHeapStatistics().heap_size_limit,
          execArgv: process.execArgv,
        }));
        """

    func view(environment: [String: String] = [:]) async throws -> MemoryView {
        let guest = try await withRuntime(limits: Self.limits) { runtime in
            try await runtime.runGuest(Self.memoryView, environment: environment)
        }
        try #require(guest.termination == .exited(0), "\(guest)")
        return try guest.json(MemoryView.self)
    }

    @Test("process.constrainedMemory() is memoryBytes")
    func constrainedMemory() async throws {
        #expect(try await view().constrained == Double(Self.memoryBytes))
    }

    @Test("V8's heap limit is below memoryBytes, from --max-old-space-size at three quarters of it")
    func heapLimitBelowMemory() async throws {
        let view = try await view()
        #expect(view.heapLimit < Double(Self.memoryBytes), "heap_size_limit \(view.heapLimit)")
        #expect(view.execArgv.contains("--max-old-space-size=192"), "\(view.execArgv)")
    }

    @Test("a --max-old-space-size the caller gives in NODE_OPTIONS wins")
    func callerHeapLimitWins() async throws {
        let view = try await view(environment: ["NODE_OPTIONS": "--max-old-space-size=100"])
        #expect(!view.execArgv.contains { $0.hasPrefix("--max-old-space-size") }, "\(view.execArgv)")
        // 100 MiB of old space plus a young generation of a few MiB: not the 192 MiB the limit would give.
        #expect(view.heapLimit >= Double(100 << 20) && view.heapLimit < Double(160 << 20), "heap_size_limit \(view.heapLimit)")
    }

    @Test("a heap bomb ends with node's JavaScript heap error, not the kernel's OOM kill")
    func heapBomb() async throws {
        let guest = try await withRuntime(limits: Self.limits) { runtime in
            try await runtime.runGuest("const a = []; for (;;) a.push(new Array(1e6).fill(1));")
        }
        #expect(guest.termination != .outOfMemory, "\(guest.termination)")
        // V8 aborts after printing its error: SIGABRT (exit 134 in a shell).
        #expect(guest.termination == .signaled(try Signal(named: "SIGABRT")), "\(guest.termination)")
        #expect(
            guest.stderr.contains("JavaScript heap out of memory") || guest.stderr.contains("Reached heap limit"),
            "stderr: \(guest.stderr.suffix(2000))")
    }

    @Test("the guest sees only its own cgroups, at \"/\", read-only")
    func cgroupView() async throws {
        let guest = try await withRuntime(limits: Self.limits) { runtime in
            try await runtime.runGuest(
                """
                const fs = require("fs");
                const attempt = (work) => { try { work(); return "done"; } catch (error) { return error.code; } };
                const views = fs.readdirSync("/sys/fs/cgroup");
                const limitFile = views.includes("memory") ? "/sys/fs/cgroup/memory/memory.limit_in_bytes" : "/sys/fs/cgroup/memory.max";
                const dir = views.includes("memory") ? "/sys/fs/cgroup/memory" : "/sys/fs/cgroup";
                console.log(JSON.stringify({
                  membership: fs.readFileSync("/proc/self/cgroup", "utf8").trim().split("\\n"),
                  sys: fs.readdirSync("/sys"),
                  limit: fs.readFileSync(limitFile, "utf8").trim(),
                  subdirectories: fs.readdirSync(dir, { withFileTypes: true }).filter((entry) => entry.isDirectory()).map((entry) => entry.name),
                  write: attempt(() => fs.writeFileSync(limitFile, "1073741824")),
                  mkdir: attempt(() => fs.mkdirSync(dir + "/child")),
                }));
                """)
        }
        struct View: Decodable {
            let membership: [String]
            let sys: [String]
            let limit: String
            let subdirectories: [String]
            let write: String
            let mkdir: String
        }
        try #require(guest.termination == .exited(0), "\(guest)")
        let view = try guest.json(View.self)
        // Every hierarchy's path is "/": the namespace is rooted at the sandbox's own cgroups.
        #expect(view.membership.allSatisfy { $0.hasSuffix(":/") }, "\(view.membership)")
        #expect(view.sys == ["fs"])
        #expect(view.limit == "\(Self.memoryBytes)")
        #expect(view.subdirectories.isEmpty, "other cgroups are visible: \(view.subdirectories)")
        #expect(["EROFS", "EACCES"].contains(view.write), "\(view.write)")
        #expect(view.mkdir == "EROFS")
    }
}
