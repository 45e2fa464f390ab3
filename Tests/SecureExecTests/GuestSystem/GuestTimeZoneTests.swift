import Foundation
import TestSupport
import Testing

@testable import SecureExec

/// The guest's local time follows the host's zone (its /etc/localtime links
/// to the host zone's file, as the host's does) unless the guest is given
/// `TZ`. `.standard` and `.minimal` bind the host's zone file; `.host` links
/// into the host's own /usr; a `.directory` root links to its own zone file
/// of that name, or keeps its own /etc/localtime.
@Suite("Guest system: local time", .needsRoot, .timeLimit(.minutes(2)))
struct GuestTimeZoneTests {
    struct Zone: Decodable, Equatable {
        let name: String
        let offset: Int
    }

    /// Prints the zone name ICU found and the offset of a fixed winter date
    /// (`getTimezoneOffset`, minutes west of UTC) as JSON.
    static let zoneProbe = """
        console.log(JSON.stringify({
          name: Intl.DateTimeFormat().resolvedOptions().timeZone,
          offset: new Date(Date.UTC(2024, 0, 15, 12)).getTimezoneOffset(),
        }));
        """

    /// The host's zone as the supervisor sees it: node on the host, with no `TZ`, reads /etc/localtime.
    static func hostZone() async throws -> Zone {
        let program = try HostProgram("/usr/bin/env", arguments: ["-u", "TZ", "node", "-e", zoneProbe])
        defer { program.stop() }
        let exit = try await program.waitForExit()
        try #require(exit.status == 0, "host node: \(program.stderr.text)")
        return try JSONDecoder().decode(Zone.self, from: Data(program.stdout.bytes))
    }

    func guestZone(environment: [String: String] = [:]) async throws -> Zone {
        let guest = try await withRuntime { try await $0.runGuest(Self.zoneProbe, environment: environment) }
        try #require(guest.termination == .exited(0), "\(guest)")
        return try guest.json(Zone.self)
    }

    @Test("the guest's zone and offset are the host's")
    func followsHost() async throws {
        let host = try await Self.hostZone()
        let guest = try await guestZone()
        #expect(guest.offset == host.offset, "guest \(guest), host \(host)")
        // A host /etc/localtime that is a file, not a link, carries no zone name
        // (the host's ICU finds one by searching its own zoneinfo).
        if (try? FileManager.default.destinationOfSymbolicLink(atPath: "/etc/localtime")) != nil {
            #expect(guest.name == host.name, "guest \(guest), host \(host)")
        }
    }

    @Test("TZ given to the guest wins", arguments: [("UTC", 0), ("Asia/Tokyo", -540)])
    func tzWins(zone: String, offset: Int) async throws {
        #expect(try await guestZone(environment: ["TZ": zone]) == Zone(name: zone, offset: offset))
    }

    /// A host in another zone than this machine's: the CLI runs in a mount
    /// namespace of its own where /etc (an overlay of the real one) has
    /// /etc/localtime linked to Asia/Tokyo. Nothing outside that namespace changes.
    @Test("on a host whose zone is Asia/Tokyo, the guest's is too")
    func followsAnotherHostZone() async throws {
        try #require(FileManager.default.fileExists(atPath: "/usr/share/zoneinfo/Asia/Tokyo"), "the host has no tzdata")
        let cli = try PackagePaths.requireProduct("secure-exec")
        try await withHostDirectory { scratch in
            let script = """
                set -e
                mount -t tmpfs tmpfs "$1"
                mkdir "$1/upper" "$1/work"
                mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc
                ln -sfn /usr/share/zoneinfo/Asia/Tokyo /etc/localtime
                exec "$2" run -e "$3"
                """
            let program = try HostProgram(
                "/usr/bin/unshare",
                arguments: ["--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh", scratch, cli, Self.zoneProbe])
            defer { program.stop() }
            let exit = try await program.waitForExit(timeout: .seconds(60))
            try #require(exit.status == 0, "stderr: \(program.stderr.text)")
            let zone = try JSONDecoder().decode(Zone.self, from: Data(program.stdout.bytes))
            #expect(zone == Zone(name: "Asia/Tokyo", offset: -540))
        }
    }

    /// Where the guest's /etc/localtime links, whether that file is there, and whether a mount sits on it.
    struct Link: Decodable, Equatable {
        let target: String
        let exists: Bool
        let mounted: Bool
    }

    static let linkProbe = """
        const fs = require("fs");
        const target = fs.readlinkSync("/etc/localtime");
        const points = fs.readFileSync("/proc/self/mountinfo", "utf8").trim().split("\\n").map((line) => line.split(" ")[4]);
        console.log(JSON.stringify({ target, exists: fs.existsSync(target), mounted: points.includes(target) }));
        """

    /// The host zone's guest path, for a host whose /etc/localtime links into a zoneinfo directory.
    static func hostZoneLink() throws -> String {
        let zone = try #require(RuntimeBinds.timeZone(), "the host has no /etc/localtime")
        return try #require(zone.link, "the host's /etc/localtime is a file, not a link")
    }

    func link(in root: RootImage) async throws -> Link {
        let guest = try await withRuntime(root: root) { try await $0.runGuest(Self.linkProbe) }
        try #require(guest.termination == .exited(0), "\(guest)")
        return try guest.json(Link.self)
    }

    @Test("in .standard the host's zone file is bound at its own path; in .host the host's /usr already has it")
    func boundOrShown() async throws {
        let zone = try Self.hostZoneLink()
        #expect(try await link(in: .standard) == Link(target: zone, exists: true, mounted: true))
        #expect(try await link(in: .host) == Link(target: zone, exists: true, mounted: false))
    }

    @Test("a .directory root links to its own file of the host's zone, and without one keeps its own /etc/localtime")
    func operatorRoot() async throws {
        let zone = try Self.hostZoneLink()
        try await withBuiltRoot(shell: false) { root in
            try HostFiles.symlink(root + "/etc/localtime", to: "/usr/share/zoneinfo/Operator/Zone")
            #expect(try await link(in: .directory(root)) == Link(target: "/usr/share/zoneinfo/Operator/Zone", exists: false, mounted: false))
            try HostFiles.write(root + zone, "TZif of the operator's\n")
            #expect(try await link(in: .directory(root)) == Link(target: zone, exists: true, mounted: false))
        }
    }
}
