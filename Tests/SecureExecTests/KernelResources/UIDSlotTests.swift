import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Host uid ranges are leased by `flock` on /run/secure-exec/uid-slots/<slot>
/// (a root-only directory): one name space for the whole machine whatever
/// network namespace a supervisor runs in (the abstract-socket leases used
/// before were per network namespace, so supervisors in two of them both got
/// slot 0). A slot is picked at random among the free ones, and one given
/// back in the last 60 s is passed over while others are free.
@Suite("Kernel resources: uid ranges are leased machine-wide", .needsRoot, .timeLimit(.minutes(2)))
struct UIDSlotTests {
    /// A started secure-exec-test-host with its sandbox's host uid base.
    struct Supervisor {
        let program: HostProgram
        let initPID: Int32
        let base: UInt32
    }

    /// Starts a secure-exec-test-host in a network namespace of its own and
    /// reads its sandbox init's host uid. The caller stops it and cleans up
    /// (`stopAll`), also when this throws after the program started.
    static func startSupervisor(into started: inout [HostProgram]) async throws -> Supervisor {
        let program = try TestHost.start(["kernel-uid-\(UUID().uuidString)", "--new-netns"])
        started.append(program)
        try await program.waitUntilReady()
        let inits = KernelSandbox.inits(ofSupervisor: program.pid)
        try #require(inits.count == 1, "supervisor \(program.pid) has sandbox inits \(inits)")
        let base = try #require(KernelProc.hostUID(of: inits[0]), "no Uid line for init \(inits[0])")
        return Supervisor(program: program, initPID: inits[0], base: base)
    }

    static func stopAll(_ programs: [HostProgram]) {
        programs.forEach { $0.stop() }
        KernelLeftovers.clean(supervisors: Set(programs.map(\.pid)))
    }

    static func describe(_ base: UInt32) -> String { "0x\(String(base, radix: 16)) (slot \((base &- KernelSlots.firstBase) >> 16))" }

    @Test("two supervisors in different network namespaces get different uid ranges, each held by flock")
    func separateNetworkNamespaces() async throws {
        var programs: [HostProgram] = []
        defer { Self.stopAll(programs) }
        let first = try await Self.startSupervisor(into: &programs)
        let second = try await Self.startSupervisor(into: &programs)

        // Control: the two supervisors really are in network namespaces of their own.
        let own = try #require(KernelProc.netNamespace(of: getpid()))
        let firstNet = try #require(KernelProc.netNamespace(of: first.program.pid))
        let secondNet = try #require(KernelProc.netNamespace(of: second.program.pid))
        #expect(Set([own, firstNet, secondNet]).count == 3, "network namespaces: test \(own), \(firstNet), \(secondNet)")

        #expect(first.base != second.base, "both sandboxes run as host uid \(Self.describe(first.base))")
        for supervisor in [first, second] {
            #expect(supervisor.base >= KernelSlots.firstBase && (supervisor.base - KernelSlots.firstBase) % 65536 == 0, "\(Self.describe(supervisor.base))")
            let slot = KernelSlots.path(forBase: supervisor.base)
            #expect(KernelSlots.isLocked(slot) == true, "\(slot) is not flock-ed while supervisor \(supervisor.program.pid) holds it")
            let text = HostCensus.readText(slot) ?? ""
            #expect(text.contains("\(supervisor.program.pid)"), "\(slot) says \(text.debugDescription)")
            // The guest (uid 1000 inside) is base + 1000 on the host.
            let guests = HostCensus.children(of: supervisor.initPID).filter(\.isGuestNode)
            #expect(guests.count == 1, "guests of init \(supervisor.initPID): \(guests)")
            for guest in guests { #expect(KernelProc.hostUID(of: guest.pid) == supervisor.base + 1000) }
        }
    }

    @Test("a fresh supervisor does not get the range another one gave back a moment ago")
    func quarantineAcrossSupervisors() async throws {
        var programs: [HostProgram] = []
        defer { Self.stopAll(programs) }
        let first = try await Self.startSupervisor(into: &programs)
        first.program.stop()
        // The kernel drops a dead holder's lock.
        let slot = KernelSlots.path(forBase: first.base)
        let released = await poll(for: .seconds(5)) { KernelSlots.isLocked(slot) == false }
        #expect(released, "\(slot) is still locked after its holder \(first.program.pid) was killed")
        // A fresh process in a fresh network namespace (the old leases gave it slot 0 again).
        let second = try await Self.startSupervisor(into: &programs)
        #expect(second.base != first.base, "the range \(Self.describe(first.base)) was handed out again at once")
    }

    @Test("create, dispose, create: the second runtime gets a different range; the first's slot is unlocked and stamped")
    func quarantineInOneProcess() async throws {
        let firstBase = try await withRuntime { runtime in
            let base = try await KernelSandbox.uidBase(of: runtime)
            #expect(KernelSlots.isLocked(KernelSlots.path(forBase: base)) == true)
            return base
        }
        let slot = KernelSlots.path(forBase: firstBase)
        // Unlocked at once, unless another supervisor's scan holds it for a
        // moment (or a process being spawned still has a copy of the fd).
        let unlocked = await poll(for: .seconds(3)) { KernelSlots.isLocked(slot) == false }
        #expect(unlocked, "\(slot) is still locked after dispose")
        if let info = try? HostFiles.status(slot) {
            let age = Date().timeIntervalSince1970 - Double(info.st_mtim.tv_sec)
            #expect(age < 30, "the slot file was not touched on release (\(age) s old)")
        }
        var bases = [firstBase]
        for _ in 0..<3 {
            let base = try await withRuntime { runtime in try await KernelSandbox.uidBase(of: runtime) }
            #expect(!bases.contains(base), "range \(Self.describe(base)) came back within a minute: \(bases.map(Self.describe))")
            bases.append(base)
        }
    }

    @Test("/run/secure-exec and its uid-slots directory are root's, mode 0700; slot files are root's 0600")
    func stateDirectoryIsRootOnly() async throws {
        // A runtime makes sure they exist.
        let base = try await withRuntime { runtime in try await KernelSandbox.uidBase(of: runtime) }
        for path in ["/run/secure-exec", KernelSlots.directory] {
            let info = try HostFiles.status(path)
            #expect(info.st_mode & S_IFMT == S_IFDIR, "\(path) is not a directory")
            #expect(info.st_uid == 0 && info.st_gid == 0, "\(path) belongs to \(info.st_uid):\(info.st_gid)")
            #expect(info.st_mode & 0o7777 == 0o700, "\(path) has mode \(String(info.st_mode & 0o7777, radix: 8))")
        }
        let slot = try HostFiles.status(KernelSlots.path(forBase: base))
        #expect(slot.st_mode & S_IFMT == S_IFREG)
        #expect(slot.st_uid == 0)
        #expect(slot.st_mode & 0o077 == 0, "slot file mode \(String(slot.st_mode & 0o7777, radix: 8))")
    }
}
