import Foundation
import SecureExec
import TestSupport
import Testing

/// /proc files that describe the host rather than the sandbox (how it
/// booted, its kernel configuration, modules, disks, swap, its boot id) read
/// as empty in a guest, or do not exist there, while the host's own are not
/// empty.
@Suite("Kernel resources: host facts are masked in /proc", .needsRoot, .timeLimit(.minutes(1)))
struct HostFactsTests {
    static let files = [
        "/proc/cmdline", "/proc/config.gz", "/proc/bootconfig", "/proc/sys/kernel/random/boot_id", "/proc/modules",
        "/proc/partitions", "/proc/diskstats", "/proc/swaps", "/proc/interrupts", "/proc/iomem", "/proc/ioports",
        "/proc/devices", "/proc/zoneinfo", "/proc/buddyinfo", "/proc/pagetypeinfo", "/proc/vmallocinfo",
        "/proc/pressure/cpu", "/proc/pressure/memory", "/proc/pressure/io",
    ]

    /// For each path in argv: "absent <code>" or "bytes <n>".
    static let reader = """
        const fs = require("fs");
        const out = {};
        for (const path of process.argv.slice(2)) {
          try { out[path] = "bytes " + fs.readFileSync(path).length; } catch (e) { out[path] = "absent " + e.code; }
        }
        console.log(JSON.stringify(out));
        """

    @Test("cmdline, config.gz, boot_id, modules, disks, swaps, hardware, memory detail and pressure read as empty or are absent")
    func hostFactsMasked() async throws {
        // Only files the host really has say anything; the host must have most of them.
        let present = Self.files.filter { (HostCensus.readBytes($0)?.count ?? 0) > 0 }
        try #require(present.count >= 4, "the host itself has almost none of \(Self.files): only \(present)")
        let seen = try await withRuntime { runtime in
            let guest = try await runtime.runGuest(Self.reader, arguments: Self.files)
            try #require(guest.termination == .exited(0), "\(guest.stderr)")
            return try guest.json([String: String].self)
        }
        for path in present {
            let hostBytes = HostCensus.readBytes(path)?.count ?? 0
            let guestView = try #require(seen[path], "no reading of \(path)")
            #expect(
                guestView == "bytes 0" || guestView.hasPrefix("absent "),
                "the guest reads \(path) (\(guestView)); the host's has \(hostBytes) bytes")
        }
        // Files the host lacks must not appear with content in the guest either.
        for path in Self.files where !present.contains(path) {
            #expect(seen[path] == "bytes 0" || (seen[path]?.hasPrefix("absent ") ?? false), "\(path): \(seen[path] ?? "?")")
        }
    }

    @Test("the guest's boot id is not the host's (control: the guest can read /proc/sys/kernel/random/uuid)")
    func bootIDNotShared() async throws {
        let hostBootID = try #require(HostCensus.readText("/proc/sys/kernel/random/boot_id"))
        let guest = try await withRuntime { runtime in
            try await runtime.runGuest(
                """
                const fs = require("fs");
                const read = (path) => { try { return fs.readFileSync(path, "utf8"); } catch (e) { return "absent " + e.code; } };
                console.log(JSON.stringify({ bootID: read("/proc/sys/kernel/random/boot_id"), uuid: read("/proc/sys/kernel/random/uuid") }));
                """)
        }
        try #require(guest.termination == .exited(0), "\(guest.stderr)")
        let view = try guest.json([String: String].self)
        #expect(view["bootID"] != hostBootID)
        #expect(!(view["bootID"] ?? "").contains(hostBootID.trimmingCharacters(in: .whitespacesAndNewlines)))
        // The same directory stays readable: the mask is per file, not a blanket denial.
        #expect((view["uuid"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines).count == 36, "\(view)")
    }
}
