// A host program in a package of its own: it finds `secure-exec-init` next
// to itself (built with `swift build --product secure-exec-init`) and the
// root skeleton in the SecureExec sources it was built from.
import Foundation
import SecureExec

let report = await NodeRuntime.checkHost()
guard report.canRunSandboxes else {
    print("this host cannot run sandboxes:")
    for check in report.checks where !check.ok { print(" -", check.name + ":", check.detail) }
    exit(1)
}
let answer = try await withNodeRuntime { runtime in
    try await runtime.exec("console.log(6 * 7)", timeout: .seconds(10))
}
print("the guest says", answer.stdoutText, terminator: "")
