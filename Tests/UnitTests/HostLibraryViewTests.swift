import Foundation
import Testing

@testable import SecureExec

#if canImport(Glibc)
import Glibc
#endif

/// Which host library directories the guest's read-only library view shows,
/// and how runtime files it already shows are left out.
@Suite("Host library view")
struct HostLibraryViewTests {
    #if arch(x86_64)
    static let multiarch = "/usr/lib/x86_64-linux-gnu"
    #else
    static let multiarch = "/usr/lib/aarch64-linux-gnu"
    #endif
    static let hasMultiarch = FileManager.default.fileExists(atPath: multiarch)

    @Test("the root, the general trees and every directory above them are never shown whole")
    func generalTreesNeverShown() {
        #expect(HostLibraryView.directories(["/", "/usr", "/usr/local", "/lib", "/usr/lib", "/usr/local/lib"]).isEmpty)
    }

    @Test("a missing, relative, unnormalized, world-writable or non-library directory is not shown")
    func onlyAdministratorsLibraryDirectories() {
        let candidates = ["/nonexistent-secure-exec-lib", "usr/lib/x", "/usr/lib/../lib64/", "/tmp", "/etc", "/root", "/proc", "/dev/shm"]
        #expect(HostLibraryView.directories(candidates).isEmpty)
    }

    @Test("a directory inside one already shown is shown by it, whichever comes first", .enabled(if: hasMultiarch))
    func nestedDirectoriesCollapse() {
        let inner = (try? FileManager.default.contentsOfDirectory(atPath: Self.multiarch))?
            .map { Self.multiarch + "/" + $0 }.first { (try? FileManager.default.destinationOfSymbolicLink(atPath: $0)) == nil && isDirectory($0) }
        let candidates = [Self.multiarch] + (inner.map { [$0] } ?? [])
        #expect(HostLibraryView.directories(candidates).map(\.guestPath) == [Self.multiarch])
        #expect(HostLibraryView.directories(candidates.reversed()).map(\.guestPath) == [Self.multiarch])
        let shown = HostLibraryView.directories([Self.multiarch])
        #expect(shown.first?.attributes == .runtime, "read-only, nosuid, nodev")
        #expect(shown.first?.idmapped == false)
    }

    @Test("node's libraries the view shows are not bound again, and the view leads to the same host files")
    func runtimeFilesInsideTheViewAreLeftOut() throws {
        let runtime = try RuntimeBinds.mounts(node: "/usr/bin/node")
        let merged = HostLibraryView.merged(into: runtime)
        let view = merged.filter { !runtime.contains($0) }
        for file in runtime {
            let shownBy = view.first { GuestPath.isInside(file.guestPath, area: $0.guestPath) }
            if let shownBy {
                #expect(!merged.contains(file), "\(file.guestPath) is bound inside \(shownBy.guestPath)")
                #expect(HostLibraryView.hostFile(atGuestPath: file.guestPath, view: view) == file.hostPath, "\(file.guestPath)")
            } else {
                #expect(merged.contains(file), "\(file.guestPath) was dropped but the view does not show it")
            }
        }
        #expect(merged.contains { $0.guestPath == "/usr/bin/node" })
    }

    @Test("the guest's path is followed through the view's symlinks, and leaving the view finds nothing")
    func hostFileFollowsTheGuestsSymlinks() throws {
        var template = Array("/tmp/secure-exec-view-XXXXXX".utf8CString)
        let made = try #require(mkdtemp(&template))
        let host = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: host) }
        try Data("x".utf8).write(to: URL(fileURLWithPath: host + "/libreal.so.1"))
        for (name, target) in [
            ("librel.so", "libreal.so.1"), ("libabs.so", "/opt/view/libreal.so.1"), ("libup.so", "../view/libreal.so.1"),
            ("libout.so", "/etc/passwd"), ("libloop.so", "libloop.so"),
        ] {
            try FileManager.default.createSymbolicLink(atPath: host + "/" + name, withDestinationPath: target)
        }
        let view = [HostMount(hostPath: host, guestPath: "/opt/view", attributes: .runtime)]
        let real = host + "/libreal.so.1"
        #expect(HostLibraryView.hostFile(atGuestPath: "/opt/view/libreal.so.1", view: view) == real)
        #expect(HostLibraryView.hostFile(atGuestPath: "/opt/view/librel.so", view: view) == real)
        #expect(HostLibraryView.hostFile(atGuestPath: "/opt/view/libabs.so", view: view) == real)
        #expect(HostLibraryView.hostFile(atGuestPath: "/opt/view/libup.so", view: view) == real)
        #expect(HostLibraryView.hostFile(atGuestPath: "/opt/view/libout.so", view: view) == nil)
        #expect(HostLibraryView.hostFile(atGuestPath: "/opt/view/libloop.so", view: view) == nil)
        #expect(HostLibraryView.hostFile(atGuestPath: "/opt/view/missing.so", view: view) == nil)
        #expect(HostLibraryView.hostFile(atGuestPath: "/opt/elsewhere/libreal.so.1", view: view) == nil)
    }

    private func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
    }
}
