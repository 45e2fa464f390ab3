import Foundation
import Testing

@testable import SecureExec

#if canImport(Glibc)
import Glibc
#endif

/// How the host's /etc/localtime becomes the guest's: the zone file bound
/// where the host keeps it, with the guest's /etc/localtime linked to it.
@Suite("Time zone bind")
struct TimeZoneBindTests {
    /// Runs `body` with a fresh directory, removed afterwards.
    func withDirectory(_ body: (String) throws -> Void) throws {
        var template = Array("/tmp/secure-exec-unit-XXXXXX".utf8CString)
        let path = try #require(mkdtemp(&template).map { String(cString: $0) })
        defer { try? FileManager.default.removeItem(atPath: path) }
        try body(path)
    }

    @Test("a link into a zoneinfo directory: the zone file at the same place in the guest, /etc/localtime linked to it")
    func zoneLink() throws {
        try withDirectory { directory in
            let zoneinfo = directory + "/share/zoneinfo/Asia"
            try FileManager.default.createDirectory(atPath: zoneinfo, withIntermediateDirectories: true)
            #expect(FileManager.default.createFile(atPath: zoneinfo + "/Tokyo", contents: Data("TZif".utf8)))
            try FileManager.default.createSymbolicLink(atPath: directory + "/localtime", withDestinationPath: zoneinfo + "/Tokyo")
            let zone = try #require(RuntimeBinds.timeZone(hostLink: directory + "/localtime"))
            #expect(zone.mount.hostPath == zoneinfo + "/Tokyo")
            #expect(zone.mount.guestPath == "/usr/share/zoneinfo/Asia/Tokyo")
            #expect(zone.mount.attributes == .runtime)
            #expect(zone.link == "/usr/share/zoneinfo/Asia/Tokyo")
            // A caller's mount over where it would go wins: no zone then.
            let share = HostMount(hostPath: "/usr/share", guestPath: "/usr/share", attributes: .runtime)
            #expect(RuntimeBinds.timeZone(hostLink: directory + "/localtime", besides: [share]) == nil)
        }
    }

    @Test("a plain file is bound at /etc/localtime as it is; none, or a dangling link, gives no zone (UTC)")
    func plainOrMissing() throws {
        try withDirectory { directory in
            #expect(FileManager.default.createFile(atPath: directory + "/localtime", contents: Data("TZif".utf8)))
            let zone = try #require(RuntimeBinds.timeZone(hostLink: directory + "/localtime"))
            #expect(zone.mount.guestPath == "/etc/localtime")
            #expect(zone.link == nil)
            #expect(RuntimeBinds.timeZone(hostLink: directory + "/none") == nil)
            try FileManager.default.createSymbolicLink(atPath: directory + "/dangling", withDestinationPath: directory + "/zoneinfo/Nowhere")
            #expect(RuntimeBinds.timeZone(hostLink: directory + "/dangling") == nil)
        }
    }
}
