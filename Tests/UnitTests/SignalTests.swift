import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Unknown signals are rejected with `.invalidArgument` (README, "The
/// API": bad input) and known names map to the platform's numbers.
@Suite("Signal names and numbers", .timeLimit(.minutes(1)))
struct SignalInputTests {
    @Test("numbers outside the signal range are rejected", arguments: [Int32(99), 0, -1, 32, 33, 65])
    func badNumber(number: Int32) {
        let error = #expect(throws: SecureExecError.self) { try Signal(number) }
        #expect(error?.code == .invalidArgument)
    }

    @Test("unknown names are rejected", arguments: ["SIGNOPE", "NOPE", "", "SIG", "SIGTERM2"])
    func badName(name: String) {
        let error = #expect(throws: SecureExecError.self) { try Signal(named: name) }
        #expect(error?.code == .invalidArgument)
    }

    @Test("names with or without SIG, in any case, give the platform's number")
    func goodNames() throws {
        #expect(try Signal(named: "SIGTERM") == .terminate)
        #expect(try Signal(named: "term") == .terminate)
        #expect(try Signal(named: "sigkill") == .kill)
        #expect(try Signal(named: "SIGUSR1").rawValue == 10)
        #expect(try Signal(15) == .terminate)
        #expect(try Signal(34).rawValue == 34)
    }

    @Test("unknown signal names are invalidArgument", arguments: ["SIGNOPE", "NOPE", "", "SIG", "SIGUSR3", "9"])
    func unknownSignalName(name: String) async {
        await expectError(.invalidArgument, "\(name.debugDescription)") { try Signal(named: name) }
    }

    @Test("signal names are accepted with or without SIG, in any case")
    func knownSignalNames() throws {
        #expect(try Signal(named: "USR1") == .user1)
        #expect(try Signal(named: "sigusr1") == .user1)
        #expect(try Signal(named: "SIGTERM") == .terminate)
        #expect(try Signal(named: "kill").rawValue == SIGKILL)
        #expect(try Signal(named: "USR1").name == "SIGUSR1")
    }
}
