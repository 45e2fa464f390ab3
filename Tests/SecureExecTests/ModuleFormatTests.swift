import SecureExec
import TestSupport
import Testing

/// Code runs unchanged whichever module system it is written for (README,
/// "The API"): an ES module with `import` and a CommonJS script with
/// `require` both start and print, with nothing extra on stderr.
@Suite("ES modules and CommonJS", .needsRoot, .timeLimit(.minutes(1)))
struct ModuleFormatTests {
    @Test("an ES module importing node:os runs")
    func esModule() async throws {
        let guest = try await withRuntime { runtime in
            try await runtime.runGuest(
                """
                import os from "node:os";
                console.log("esm", os.platform(), typeof require, typeof import.meta.url);
                """)
        }
        #expect(guest.termination == .exited(0))
        #expect(guest.line == "esm linux undefined string")
        #expect(guest.stderr == "")
    }

    @Test("a CommonJS script requiring os runs")
    func commonJS() async throws {
        let guest = try await withRuntime { runtime in
            try await runtime.runGuest(
                """
                const os = require("os");
                console.log("cjs", os.platform(), typeof module.exports, typeof __filename);
                """)
        }
        #expect(guest.termination == .exited(0))
        #expect(guest.line == "cjs linux object string")
        #expect(guest.stderr == "")
    }
}
